"""The panel's state on the module's parameter node, saved with the scene.

The node is the module's singleton ``vtkMRMLScriptedModuleNode``, found or created the way
``ScriptedLoadableModuleLogic.getParameterNode`` does it (singleton tag and ``ModuleName``
attribute ``MultiModalSeg``). Values are stored in the encoding of Slicer's
``parameterNodeWrapper`` (strings and numbers as parameters, booleans as ``True``/``False``,
nodes as a node reference plus an empty parameter), so a scene saved by one version of the
panel reads in another. Missing parameters get their defaults when the node is opened, as the
wrapper does.

The wrapper itself is not used: it exists only inside the Slicer application, and its GUI
binding writes a widget's value back whenever the node changes (a scene load moving the
opacity slider used to re-apply the overlay). Here the panel controller is the only writer,
and it runs headless on real MRML nodes in the tests.

``inputOrigin<i>`` records who set input row ``i``: the panel (``""``: it may fill the row
again), the user with a volume (``user``), or the user with "(missing)" (``userEmpty``). A
user's choice, empty included, is never overwritten by the panel's auto-fill.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .backend_commands import DEVICES

__all__ = [
    "MODULE_NAME",
    "MAX_INPUTS",
    "INPUT_FROM_PANEL",
    "INPUT_FROM_USER",
    "INPUT_EMPTIED_BY_USER",
    "Field",
    "FIELDS",
    "find_or_create_parameter_node",
    "PanelParameters",
]

MODULE_NAME = "MultiModalSeg"

MAX_INPUTS = 4
"""The panel has four input rows (``inputVolumeSelector0..3`` in the .ui), shown one per modality of
the chosen model: BraTS-style MR, the largest case, has four. A model with more is refused with a
sentence (the command line takes any number)."""

INPUT_FROM_PANEL = ""
INPUT_FROM_USER = "user"
INPUT_EMPTIED_BY_USER = "userEmpty"
_INPUT_ORIGINS = (INPUT_FROM_PANEL, INPUT_FROM_USER, INPUT_EMPTIED_BY_USER)


@dataclass(frozen=True)
class Field:
    """One parameter: its name on the node, its kind (``str``, ``float``, ``int``, ``bool``,
    ``node``), its default and the values it accepts."""

    name: str
    kind: str
    default: Any = None
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] = ()

    def check(self, value: Any) -> Any:
        """``value`` converted to the field's kind; ValueError when it is out of range."""
        if self.kind == "node":
            return value
        converted = {"str": str, "float": float, "int": int, "bool": bool}[self.kind](value)
        if self.choices and converted not in self.choices:
            raise ValueError(f"{self.name} must be one of {', '.join(self.choices)}, not '{converted}'.")
        too_small = self.minimum is not None and converted < self.minimum
        if too_small or self.maximum is not None and converted > self.maximum:
            raise ValueError(f"{self.name} must be within {self.minimum}-{self.maximum}, not {converted}.")
        return converted


FIELDS: tuple[Field, ...] = (
    Field("modelId", "str", ""),
    Field("modelChosenByUser", "bool", False),
    *(Field(f"inputVolume{index}", "node") for index in range(MAX_INPUTS)),
    *(Field(f"inputOrigin{index}", "str", INPUT_FROM_PANEL, choices=_INPUT_ORIGINS) for index in range(MAX_INPUTS)),
    Field("device", "str", "auto", choices=DEVICES),
    Field("overlap", "float", 0.5, 0.0, 0.9),
    Field("outputSegmentation", "node"),
    Field("overlayVolume", "node"),
    Field("overlayOpacity", "float", 0.5, 0.0, 1.0),
    Field("finetuneIterations", "int", 200, 1, 100000),
)
_FIELDS_BY_NAME = {field.name: field for field in FIELDS}


def find_or_create_parameter_node(scene: Any, module_name: str = MODULE_NAME) -> Any:
    """The module's singleton parameter node in ``scene``, created when there is none."""
    node = scene.GetSingletonNode(module_name, "vtkMRMLScriptedModuleNode")
    if node is None:
        node = scene.CreateNodeByClass("vtkMRMLScriptedModuleNode")
        node.UnRegister(None)  # the Python variable owns it now, as in ScriptedLoadableModuleLogic
        node.SetSingletonTag(module_name)
        node.SetName(scene.GenerateUniqueName(module_name))
        node.SetAttribute("ModuleName", module_name)
        node = scene.AddNode(node)
    elif node.GetAttribute("ModuleName") != module_name:  # a scene close removes it
        node.SetAttribute("ModuleName", module_name)
    return node


class PanelParameters:
    """Typed access to the parameter node; every value is read from and written to the node."""

    def __init__(self, node: Any) -> None:
        self.node = node
        for field in FIELDS:
            if not node.HasParameter(field.name):
                self.set(field.name, field.default)

    def get(self, name: str) -> Any:
        field = _FIELDS_BY_NAME[name]
        if field.kind == "node":
            return self.node.GetNodeReference(name)
        text = self.node.GetParameter(name)
        if field.kind == "bool":
            return text == "True"
        try:
            return field.check(text)
        except ValueError:  # an edited or older scene: fall back to the default
            return field.default

    def set(self, name: str, value: Any) -> None:
        field = _FIELDS_BY_NAME[name]
        if field.kind == "node":
            self.node.SetParameter(name, "")
            self.node.SetNodeReferenceID(name, value.GetID() if value is not None else None)
        elif field.kind == "bool":
            self.node.SetParameter(name, "True" if value else "False")
        else:
            self.node.SetParameter(name, str(field.check(value)))

    # -- the inputs -------------------------------------------------------------------------------------------

    def input_volume(self, index: int) -> Any:
        return self.get(f"inputVolume{index}")

    def input_origin(self, index: int) -> str:
        return self.get(f"inputOrigin{index}")

    def set_input(self, index: int, volume: Any, origin: str) -> None:
        """Set row ``index`` to ``volume`` (None: empty) and record who chose it."""
        self.set(f"inputVolume{index}", volume)
        self.set(f"inputOrigin{index}", origin)

    def input_volumes(self, count: int = MAX_INPUTS) -> list[Any]:
        return [self.input_volume(index) for index in range(min(count, MAX_INPUTS))]

    def any_input_chosen_by_user(self) -> bool:
        return any(self.input_origin(index) != INPUT_FROM_PANEL for index in range(MAX_INPUTS))

    def clear_inputs(self) -> None:
        """Every row empty and the panel's again (another model, or "Match by names")."""
        for index in range(MAX_INPUTS):
            self.set_input(index, None, INPUT_FROM_PANEL)
