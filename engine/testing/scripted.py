"""A scripted model for every role of the method, to drive FakeOpenAI in end-to-end tests.

`MethodModel()` is a `reply` callable: it reads the system prompt of the default
templates, answers as a model in that role would, and makes every answer differ (a call
counter), so personas pass the dedup gate and records get distinct ids. Math solutions
agree for some problems and not for others, so `answer` is a string on some records and
null on others, as in a real run.

    with run_in_thread(reply=MethodModel()) as fake:
        ...  # point an endpoint at fake.base_url
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
import threading
from typing import Any

__all__ = ["TOOL_INTERFACE", "MethodModel"]

JOBS = ("nurse", "welder", "violinist", "beekeeper", "actuary", "glassblower", "midwife", "surveyor", "cartographer",
        "sommelier", "locksmith", "paramedic", "archivist", "falconer", "stonemason", "botanist", "chef", "pilot",
        "geologist", "potter", "librarian", "farrier", "translator", "ferryman")
TOPICS = ("medieval siege engines", "tidal energy", "jazz harmony", "urban foraging", "chess endgames",
          "volcanic soils", "sourdough chemistry", "bird migration", "tax law", "retro video games",
          "knot tying", "solar eclipses", "sign language", "antique clocks", "marathon training", "lichens",
          "opera history", "desert hydrology")
TOOL_INTERFACE = {
    "name": "count_frames", "description": "Counts capped frames in a hive.",
    "parameters": {"type": "object", "properties": {"hive": {"type": "string", "description": "Hive label."}},
                   "required": ["hive"]},
    "returns": {"type": "integer", "description": "Capped frames."}, "dependencies": []}
TOOL_CODE = "```python\ndef count_frames(hive: str) -> int:\n    return len(hive)\n```"


class MethodModel:
    """Replies chosen by the system prompt of the default templates; every call differs."""

    def __init__(self) -> None:
        self.calls = itertools.count()
        self.lock = threading.Lock()

    @staticmethod
    def persona(seed: str) -> str:
        h = int(hashlib.blake2b(seed.encode(), digest_size=8).hexdigest(), 16)
        return f"A {JOBS[h % len(JOBS)]} who spends weekends reading about {TOPICS[(h >> 8) % len(TOPICS)]}."

    def __call__(self, body: dict[str, Any]) -> str:
        with self.lock:
            n = next(self.calls)
        system = body["messages"][0]["content"]
        last = body["messages"][-1]["content"]
        if "connected to a text" in system:
            return json.dumps({"persona": self.persona(last + str(n))})
        if "close to a given person" in system:
            return json.dumps({"relations": [{"relation": "colleague", "persona": self.persona(last + f"a{n}")},
                                             {"relation": "supplier", "persona": self.persona(last + f"b{n}")}]})
        if "You write math problems" in system:
            return json.dumps({"problem": f"A crate holds {n % 9 + 2} boxes of 12 jars. How many jars?"})
        if "You solve math problems" in system:
            boxes = re.search(r"holds (\d+) boxes", last)
            if boxes and int(boxes.group(1)) % 2 == 0:  # every solution agrees
                return f"Multiply. Answer: \\boxed{{{int(boxes.group(1)) * 12}}}"
            return f"Perhaps {n}. Answer: \\boxed{{{n}}}"  # each solution differs: no agreed answer
        return self._task(system, n)

    @staticmethod
    def _task(system: str, n: int) -> str:
        if "logic puzzles" in system:
            return '{"puzzle": "Which bee never stings?", "answer": "A spelling bee."}'
        if "requests that people send" in system:
            return json.dumps({"instruction": f"Draft a checklist number {n} for me."})
        if "helpful AI assistant" in system:
            return f"Here is checklist {n}: check queen cells weekly."
        if "chatting with an AI assistant" in system:
            return f"Thanks! What about item {n}?"
        if "You are talking with this person" in system:
            return f"Line {n}"
        if "Quora-style" in system:
            return '{"question": "Why do bees swarm?", "answer": "Crowding and a new queen."}'
        if "non-player characters" in system:
            return json.dumps({"name": f"Brannoc {n}", "role": "Hive-keeper", "background": "Keeps coral bees.",
                               "personality": "Wry.", "interaction": "Trades honey for tide news."})
        if "function interfaces" in system:
            return json.dumps(TOOL_INTERFACE)
        if "Python 3 functions" in system:
            return TOOL_CODE
        return "unexpected prompt"
