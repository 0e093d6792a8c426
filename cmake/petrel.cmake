# One small helper per folder, in the spirit of absl_cc_library.
#
# petrel_library(NAME name SRCS a.cc b.cc DEPS other_lib ...)
#   A static library named petrel_<name>.
# petrel_test(NAME name SRCS x_test.cc DEPS ... LABELS unit|envtest|e2e [TIMEOUT s])
#   A GoogleTest binary registered with CTest under the given label.
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
    ENVIRONMENT "PETREL_BINARY=$<TARGET_FILE:petrel>;PETREL_SOURCE_DIR=${CMAKE_SOURCE_DIR}")
endfunction()
