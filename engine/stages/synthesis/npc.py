"""Game NPCs: a character for a game world (a text file), inspired by the persona."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

from engine.config import NpcTask
from engine.errors import ConfigError
from engine.io.checkpoint import WorkItem
from engine.stages.base import Outcome
from engine.stages.synthesis.base import CreateStage, TaskRecord, common

FIELDS = ("name", "role", "background", "personality", "interaction")


class NpcRecord(TaskRecord, kw_only=True):
    """A non-player character for the game world `world`."""

    world: str  # the world file's title (its first "# " heading, else its file name)
    name: str
    role: str
    background: str
    personality: str
    interaction: str  # how the NPC interacts with players


def load_world(path: str = "") -> tuple[str, str]:
    """(title, text) of the world file at `path`, or of the example world shipped with the engine."""
    if path:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as e:
            raise ConfigError("synthesis.npc.world", f"cannot read {path}: {e.strerror}") from None
        stem = Path(path).stem
    else:
        text = (resources.files("engine") / "data" / "game_world.md").read_text(encoding="utf-8")
        stem = "game_world"
    if not text.strip():
        raise ConfigError("synthesis.npc.world", f"{path or 'the world file'} is empty")
    title = next((ln[2:].strip() for ln in text.splitlines() if ln.startswith("# ") and ln[2:].strip()), stem)
    return title, text.strip()


class Npc(CreateStage):
    """Writes one NPC for the world, as validated JSON with the five FIELDS."""

    name = "npc"
    task = "npc"
    keys = FIELDS
    aliases = {"role": ("occupation", "title"), "interaction": ("interactions", "interaction_with_players")}

    def __init__(self, settings: NpcTask, **kw: Any) -> None:
        self.world_title, self.world = load_world(settings.world)
        super().__init__(settings, **kw)

    def fixed_values(self) -> dict[str, str]:
        return {"world": self.world}

    def finish(self, item: WorkItem, p: dict[str, Any], fields: dict[str, Any]) -> Outcome:
        rec = NpcRecord(**common(p, "npc", self.world_title, fields["name"], fields["background"]),
                        world=self.world_title, **fields)
        return Outcome(records=[("npc", rec)])
