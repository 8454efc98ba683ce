# A stand-in for Slicer's CMake package, for building the extension's CMake files without a Slicer
# build tree (Testing/module/test_module_cmake.py). It defines only what MultiModalSeg's CMake files
# call, with the copy and install semantics of Slicer's slicerMacroBuildScriptedModule (through CTK's
# ctkMacroCompilePythonScript): a relative SCRIPTS / RESOURCES entry is read from
# CMAKE_CURRENT_SOURCE_DIR/<entry> and copied to <qt-scripted-modules>/<entry>; an absolute SCRIPTS
# entry lands at its path relative to CMAKE_CURRENT_BINARY_DIR; the whole qt-scripted-modules folder is
# installed. No byte-compiling, no translations, no generic tests.

set(Slicer_FOUND TRUE)
set(Slicer_USE_FILE ${CMAKE_CURRENT_LIST_DIR}/UseSlicer.cmake)
set(Slicer_EXTENSION_GENERATE_CONFIG ${CMAKE_CURRENT_LIST_DIR}/Empty.cmake)
set(Slicer_EXTENSION_CPACK ${CMAKE_CURRENT_LIST_DIR}/Empty.cmake)
set(Slicer_QTSCRIPTEDMODULES_LIB_DIR lib/Slicer-5.12/qt-scripted-modules)
set(Slicer_INSTALL_QTSCRIPTEDMODULES_LIB_DIR lib/Slicer-5.12/qt-scripted-modules)

macro(slicerMacroBuildScriptedModule)
  cmake_parse_arguments(MY_SLICER "WITH_GENERIC_TESTS;WITH_SUBDIR;VERBOSE" "NAME" "SCRIPTS;RESOURCES" ${ARGN})
  if(MY_SLICER_UNPARSED_ARGUMENTS)
    message(FATAL_ERROR "Unknown keywords given to slicerMacroBuildScriptedModule(): ${MY_SLICER_UNPARSED_ARGUMENTS}")
  endif()
  set(_stub_destination ${CMAKE_BINARY_DIR}/${Slicer_QTSCRIPTEDMODULES_LIB_DIR})
  set(_stub_copied)
  foreach(_stub_kind SCRIPTS RESOURCES)
    foreach(_stub_file ${MY_SLICER_${_stub_kind}})
      if(IS_ABSOLUTE ${_stub_file})
        if(_stub_kind STREQUAL "RESOURCES")
          message(FATAL_ERROR "RESOURCES entries must be relative, got ${_stub_file}")
        endif()
        set(_stub_source ${_stub_file})
        file(RELATIVE_PATH _stub_target ${CMAKE_CURRENT_BINARY_DIR} ${_stub_file})
      else()
        set(_stub_source ${CMAKE_CURRENT_SOURCE_DIR}/${_stub_file})
        set(_stub_target ${_stub_file})
      endif()
      if(NOT EXISTS ${_stub_source})
        message(FATAL_ERROR "slicerMacroBuildScriptedModule(${_stub_kind}) given nonexistent file '${_stub_file}'")
      endif()
      add_custom_command(OUTPUT ${_stub_destination}/${_stub_target}
        COMMAND ${CMAKE_COMMAND} -E copy ${_stub_source} ${_stub_destination}/${_stub_target}
        DEPENDS ${_stub_source})
      list(APPEND _stub_copied ${_stub_destination}/${_stub_target})
    endforeach()
  endforeach()
  add_custom_target(Copy${MY_SLICER_NAME}PythonFiles ALL DEPENDS ${_stub_copied})
  install(DIRECTORY ${_stub_destination}/ DESTINATION ${Slicer_INSTALL_QTSCRIPTEDMODULES_LIB_DIR})
endmacro()

function(slicer_add_python_unittest)
  cmake_parse_arguments(MY "" "SCRIPT" "SLICER_ARGS" ${ARGN})
  if(NOT EXISTS ${CMAKE_CURRENT_SOURCE_DIR}/${MY_SCRIPT})
    message(FATAL_ERROR "slicer_add_python_unittest given nonexistent script '${MY_SCRIPT}'")
  endif()
  set_property(GLOBAL APPEND PROPERTY MULTIMODALSEG_STUB_UNITTESTS ${CMAKE_CURRENT_SOURCE_DIR}/${MY_SCRIPT})
endfunction()
