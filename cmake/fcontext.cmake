# fcontext.cmake - takes Boost.Context's three fcontext assembly objects out
# of Debian's static libboost_context.a and renames their symbols to
# weft__make_fcontext / weft__jump_fcontext / weft__ontop_fcontext, so the
# switch code is carried inside libweft itself (no Boost or libstdc++ at run
# time) and cannot clash with a Boost.Context the application links.
#
# Sets WEFT_FCONTEXT_OBJECTS to the renamed object files.

set(WEFT_BOOST_CONTEXT_ARCHIVE "" CACHE FILEPATH
    "Path to libboost_context.a (found automatically when empty)")
if(NOT WEFT_BOOST_CONTEXT_ARCHIVE)
  find_library(WEFT_BOOST_CONTEXT_ARCHIVE_FOUND
    NAMES libboost_context.a
    PATHS /usr/lib/${CMAKE_LIBRARY_ARCHITECTURE} /usr/lib /usr/local/lib)
  set(WEFT_BOOST_CONTEXT_ARCHIVE "${WEFT_BOOST_CONTEXT_ARCHIVE_FOUND}")
endif()
if(NOT EXISTS "${WEFT_BOOST_CONTEXT_ARCHIVE}")
  message(FATAL_ERROR "weft: libboost_context.a not found: install Debian's libboost-context-dev (apt-get install libboost-context-dev)")
endif()

find_program(WEFT_OBJCOPY NAMES ${CMAKE_OBJCOPY} objcopy REQUIRED)
find_program(WEFT_AR NAMES ${CMAKE_AR} ar REQUIRED)

execute_process(COMMAND ${WEFT_AR} t ${WEFT_BOOST_CONTEXT_ARCHIVE}
  OUTPUT_VARIABLE _members RESULT_VARIABLE _rc)
if(NOT _rc EQUAL 0)
  message(FATAL_ERROR "weft: cannot list ${WEFT_BOOST_CONTEXT_ARCHIVE}")
endif()
string(REPLACE "\n" ";" _members "${_members}")

set(_dir ${CMAKE_CURRENT_BINARY_DIR}/fcontext)
file(MAKE_DIRECTORY ${_dir})
set(WEFT_FCONTEXT_OBJECTS "")
foreach(_kind make jump ontop)
  set(_member "")
  foreach(_m IN LISTS _members)
    if(_m MATCHES "^${_kind}_.*\\.o$")
      set(_member ${_m})
    endif()
  endforeach()
  if(NOT _member)
    message(FATAL_ERROR "weft: ${WEFT_BOOST_CONTEXT_ARCHIVE} has no ${_kind}_*.o fcontext object")
  endif()
  set(_out ${_dir}/weft_${_kind}_fcontext.o)
  add_custom_command(OUTPUT ${_out}
    COMMAND ${WEFT_AR} x ${WEFT_BOOST_CONTEXT_ARCHIVE} ${_member}
    COMMAND ${WEFT_OBJCOPY}
            --redefine-sym ${_kind}_fcontext=weft__${_kind}_fcontext
            ${_member} ${_out}
    COMMAND ${CMAKE_COMMAND} -E remove ${_member}
    DEPENDS ${WEFT_BOOST_CONTEXT_ARCHIVE}
    WORKING_DIRECTORY ${_dir}
    COMMENT "Extracting ${_kind}_fcontext from libboost_context.a"
    VERBATIM)
  list(APPEND WEFT_FCONTEXT_OBJECTS ${_out})
endforeach()
set_source_files_properties(${WEFT_FCONTEXT_OBJECTS} PROPERTIES
  EXTERNAL_OBJECT TRUE GENERATED TRUE)
# Both libraries use the objects; one target owns the commands that make
# them so parallel builds do not run them twice.
add_custom_target(weft_fcontext DEPENDS ${WEFT_FCONTEXT_OBJECTS})
