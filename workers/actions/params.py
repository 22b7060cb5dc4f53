"""The base of every action's parameter model."""

from typing import ClassVar

from pydantic import BaseModel, ConfigDict


class ActionParams(BaseModel):
    """Unknown parameters are errors. A number where the API wants text is taken as text: a
    template that is one expression (`"{{ event.entity.id }}"`) renders to its native int."""

    model_config = ConfigDict(extra="forbid", coerce_numbers_to_str=True)
    # False for reads whose result only feeds later steps: they change nothing, so the loop guard
    # records nothing for them and `rules check` does not warn that they could trigger the rule.
    writes: ClassVar[bool] = True
