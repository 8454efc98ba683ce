"""An emulation of what ``MultiModalSeg.py`` needs from the Slicer application, to run the widget here.

The Slicer desktop application cannot be installed here, so this stands in for it, and only for it:

* **PythonQt** (Slicer's Qt binding) is emulated over PySide6 by :class:`PythonQtObject`: Qt
  properties read and written as attributes (``label.text = ...``, ``comboBox.count``), signals
  connected by signature (``widget.connect("activated(int)", slot)``), methods passed through.
* **Slicer's widget classes** in the .ui become small PySide6 classes with the signals and methods
  the module uses (:class:`NodeComboBox` for qMRMLNodeComboBox: ``nodeActivated`` only when the
  "user" picks, as in Slicer; :class:`SliderWidget`, :class:`CollapsibleButton`, :class:`MRMLWidget`).
* ``slicer.app``, ``slicer.ScriptedLoadableModule``, ``slicer.i18n`` and the dialogs of
  ``slicer.util`` are replaced; the scene is a real ``slicer-core`` scene and every other
  ``slicer.util`` function is Slicer's own.

What runs for real: the module file, its packages, the .ui file's widgets and their Qt signals, the
MRML scene, the backend process. What this cannot tell: how Slicer's real widget classes behave
beyond the signals and methods named here (checked against Slicer's sources in test_module_ui_file).
"""

from __future__ import annotations

import importlib.util
import re
import sys
import types
import unittest
from pathlib import Path
from typing import Any

from PySide6 import QtCore, QtGui, QtUiTools, QtWidgets


def unwrap(value: Any) -> Any:
    return value._qobject if isinstance(value, PythonQtObject) else value


def wrap(value: Any) -> Any:
    return PythonQtObject(value) if isinstance(value, QtCore.QObject) else value


class PythonQtObject:
    """A PySide6 object as PythonQt presents it to Slicer's Python."""

    __slots__ = ("_qobject",)

    def __init__(self, qobject: QtCore.QObject) -> None:
        object.__setattr__(self, "_qobject", qobject)

    def _property_index(self, name: str) -> int:
        return self._qobject.metaObject().indexOfProperty(name)

    def __getattr__(self, name: str) -> Any:
        if self._property_index(name) >= 0:
            return wrap(self._qobject.property(name))
        attribute = getattr(self._qobject, name)
        if callable(attribute) and not isinstance(attribute, QtCore.SignalInstance):
            return lambda *arguments: wrap(attribute(*[unwrap(argument) for argument in arguments]))
        return attribute

    def __setattr__(self, name: str, value: Any) -> None:
        if self._property_index(name) < 0:
            raise AttributeError(f"{type(self._qobject).__name__} has no Qt property '{name}'")
        self._qobject.setProperty(name, value)

    def connect(self, signature: str, slot: Any) -> None:
        """PythonQt's ``object.connect("signal(type)", slot)``: the signal must exist with that signature."""
        meta = self._qobject.metaObject()
        normalized = QtCore.QMetaObject.normalizedSignature(signature).data().decode()
        if type(self._qobject) in STAND_INS.values():  # a stand-in's MRML node arguments are Python objects
            normalized = re.sub(r"vtkMRML\w*\*", "PyObject", normalized)
        if meta.indexOfSignal(normalized) < 0:
            raise AttributeError(f"{type(self._qobject).__name__} has no signal {signature}")
        getattr(self._qobject, signature.split("(", 1)[0]).connect(slot)

    def __eq__(self, other: object) -> bool:
        return unwrap(other) is self._qobject

    def __hash__(self) -> int:
        return id(self._qobject)


class MRMLWidget(QtWidgets.QWidget):
    """qMRMLWidget: propagates the scene to its children (the .ui's mrmlSceneChanged connections)."""

    def setMRMLScene(self, scene: Any) -> None:
        for selector in self.findChildren(NodeComboBox):
            selector.setMRMLScene(scene)


class NodeComboBox(QtWidgets.QWidget):
    """qMRMLNodeComboBox: a current node; ``nodeActivated`` and ``nodeAddedByUser`` come only from the user."""

    nodeActivated = QtCore.Signal(object)
    nodeAddedByUser = QtCore.Signal(object)
    currentNodeChanged = QtCore.Signal(object)

    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self._node = None
        self.scene = None

    def setMRMLScene(self, scene: Any) -> None:
        self.scene = scene

    def currentNode(self) -> Any:
        return self._node

    def setCurrentNode(self, node: Any) -> None:
        if node is not self._node:
            self._node = node
            self.currentNodeChanged.emit(node)

    def userSelects(self, node: Any) -> None:
        """What a click in the popup does: the current node changes and ``nodeActivated`` is emitted."""
        self.setCurrentNode(node)
        self.nodeActivated.emit(node)


def _notifying_property(kind: type, attribute: str, signal: str) -> QtCore.Property:
    """A Qt property stored in ``attribute`` that emits ``signal`` when it changes (as ctk's widgets do)."""

    def setter(self: QtWidgets.QWidget, value: Any) -> None:
        if kind(value) != getattr(self, attribute):
            setattr(self, attribute, kind(value))
            getattr(self, signal).emit(kind(value))

    return QtCore.Property(kind, lambda self: getattr(self, attribute), setter)


class SliderWidget(QtWidgets.QWidget):
    """ctkSliderWidget: a ``value`` property and ``valueChanged(double)`` whenever it changes."""

    valueChanged = QtCore.Signal(float)
    _value = 0.0
    value = _notifying_property(float, "_value", "valueChanged")


class CollapsibleButton(QtWidgets.QWidget):
    """ctkCollapsibleButton: ``collapsed`` and ``contentsCollapsed(bool)``."""

    contentsCollapsed = QtCore.Signal(bool)
    _collapsed = False
    collapsed = _notifying_property(bool, "_collapsed", "contentsCollapsed")


STAND_INS = {"qMRMLWidget": MRMLWidget, "qMRMLNodeComboBox": NodeComboBox, "ctkSliderWidget": SliderWidget,
             "ctkCollapsibleButton": CollapsibleButton}


class _Loader(QtUiTools.QUiLoader):
    def createWidget(self, class_name: str, parent: QtWidgets.QWidget | None = None,
                     name: str = "") -> QtWidgets.QWidget:
        if class_name in STAND_INS:
            widget = STAND_INS[class_name](parent)
            widget.setObjectName(name)
            return widget
        return super().createWidget(class_name, parent, name)


def load_ui(path: str) -> PythonQtObject:
    """``slicer.util.loadUI``: the .ui file's widget tree, Slicer's classes as the stand-ins above."""
    ui_file = QtCore.QFile(str(path))
    assert ui_file.open(QtCore.QFile.ReadOnly), path
    try:
        widget = _Loader().load(ui_file)
    finally:
        ui_file.close()
    assert widget is not None, f"QUiLoader could not load {path}"
    return PythonQtObject(widget)


def child_widget_variables(widget: PythonQtObject) -> types.SimpleNamespace:
    """``slicer.util.childWidgetVariables``: every named child as an attribute."""
    children = unwrap(widget).findChildren(QtWidgets.QWidget)
    return types.SimpleNamespace(**{child.objectName(): PythonQtObject(child) for child in children
                                    if child.objectName()})


class Application:
    """The parts of ``slicer.app`` the module reads."""

    majorVersion, minorVersion = 5, 12

    def __init__(self, temporary_path: Path) -> None:
        self.temporaryPath = str(temporary_path)
        self.connections: list[tuple[str, Any]] = []

    def connect(self, signal: str, slot: Any) -> None:
        self.connections.append((signal, slot))

    def testingEnabled(self) -> bool:
        return True


def scripted_loadable_module() -> types.ModuleType:
    """``slicer.ScriptedLoadableModule``: the base classes, reduced to what they do for this module."""
    module = types.ModuleType("slicer.ScriptedLoadableModule")

    class ScriptedLoadableModule:
        def __init__(self, parent: Any) -> None:
            self.parent = parent

    class ScriptedLoadableModuleWidget:
        def __init__(self, parent: Any = None) -> None:
            self.parent = parent
            self.layout = PythonQtObject(parent._qobject.layout())
            self.reloaded = 0

        def setup(self) -> None:
            pass

        def onReload(self) -> None:
            self.reloaded += 1

    class ScriptedLoadableModuleLogic:
        def __init__(self, parent: Any = None) -> None:
            pass

    class ScriptedLoadableModuleTest(unittest.TestCase):
        def delayDisplay(self, message: str, *unused: Any) -> None:
            pass

    for cls in (ScriptedLoadableModule, ScriptedLoadableModuleWidget, ScriptedLoadableModuleLogic,
                ScriptedLoadableModuleTest):
        setattr(module, cls.__name__, cls)
    return module


class ModuleParent(QtWidgets.QWidget):
    """The module panel Slicer gives the widget (``self.parent``): a layout, ``isEntered``, module attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.setLayout(QtWidgets.QVBoxLayout())
        self.isEntered = True


def qt_module() -> types.ModuleType:
    """The ``qt`` module of PythonQt, for what the module file uses."""
    module = types.ModuleType("qt")
    module.QTimer, module.QIcon, module.QListWidgetItem = QtCore.QTimer, QtGui.QIcon, QtWidgets.QListWidgetItem
    module.Qt = QtCore.Qt
    return module


def load_module_file(path: Path, name: str = "MultiModalSegEmulated") -> types.ModuleType:
    """Execute the module file as Slicer's factory does (its folder first on sys.path)."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
