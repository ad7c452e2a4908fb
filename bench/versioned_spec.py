"""A benchmark protocol with a command of its own (futures-v1, push-plan-v1): ``NAME-vN`` and a hash of its fields."""

from __future__ import annotations

import hashlib
import json

from pydantic import BaseModel, ConfigDict

#: fields that do not change what is measured (left out of ``spec_hash``)
NON_PROTOCOL = {"name", "version", "description"}


class VersionedSpec(BaseModel):
    """Frozen; subclasses add the protocol fields (and defaults for name / description)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    name: str
    version: int = 1
    description: str = ""

    @property
    def id(self) -> str:
        return f"{self.name}-v{self.version}"

    def spec_hash(self) -> str:
        """sha256 (16 hex) of the canonical JSON of the protocol fields (all but name / version / description)."""
        text = json.dumps(self.model_dump(mode="json", exclude=NON_PROTOCOL), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def variant_of(self, base: "VersionedSpec", changed: dict) -> "VersionedSpec":
        """``base`` itself when this spec measures the same thing (equal ``spec_hash``), else this spec as
        ``custom-<base name>-<hash8>-v1``, described by what ``changed``: its records never mix with ``base``'s."""
        if self.spec_hash() == base.spec_hash():
            return base
        return self.model_copy(update={"name": f"custom-{base.name}-{self.spec_hash()[:8]}",
                                       "description": f"{base.id} with {changed}"})
