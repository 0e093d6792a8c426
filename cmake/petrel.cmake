# One small helper per folder, in the spirit of absl_cc_library.
#
# petrel_library(NAME name SRCS a.cc b.cc DEPS other_lib ...)
#   A static library named petrel_<name>.
# petrel_test(NAME name SRCS x_test.cc DEPS ... LABELS unit|envtest|e2e [TIMEOUT s])
#   A GoogleTest binary registered with CTest under the given label, and added to the
#   aggregate target <label>_tests (the sanitizer build compiles only unit_tests).
function(petrel_library)
  cmake_parse_arguments(P "" "NAME" "SRCS;DEPS" ${ARGN})
  add_library(petrel_${P_NAME} STATIC ${P_SRCS})
  target_link_libraries(petrel_${P_NAME} PUBLIC ${P_DEPS})
endfunction()

function(petrel_test)
  cmake_parse_arguments(P "" "NAME;TIMEOUT" "SRCS;DEPS;LABELS" ${ARGN})
  add_executable(${P_NAME} ${P_SRCS})
  target_link_libraries(${P_NAME} PRIVATE ${P_DEPS} GTest::gmock GTest::gtest_main)
  add_test(NAME ${P_NAME} COMMAND ${P_NAME})
  if(NOT P_TIMEOUT)
    set(P_TIMEOUT 300)
  endif()
  set_tests_properties(${P_NAME} PROPERTIES LABELS "${P_LABELS}" TIMEOUT ${P_TIMEOUT}
    ENVIRONMENT "PETREL_BINARY=${CMAKE_BINARY_DIR}/cli/petrel;PETREL_SOURCE_DIR=${CMAKE_SOURCE_DIR}")
  # Tests that run the petrel binary need it built first.
  if(NOT "unit" IN_LIST P_LABELS)
    add_dependencies(${P_NAME} petrel)
  endif()
  foreach(label ${P_LABELS})
    if(NOT TARGET ${label}_tests)
      add_custom_target(${label}_tests)
    endif()
    add_dependencies(${label}_tests ${P_NAME})
  endforeach()
endfunction()
