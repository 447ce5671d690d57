# fcontext.cmake - takes Boost.Context's three fcontext assembly objects out
# of Debian's static libboost_context.a and renames their symbols to
# weft__make_fcontext / weft__jump_fcontext / weft__ontop_fcontext, so the
# switch code is carried inside libweft itself (no Boost or libstdc++ at run
# time) and cannot clash with a Boost.Context the application links.
#
# Sets WEFT_FCONTEXT_ABI to Boost's name for the target's ABI (x86_64_sysv,
# arm64_aapcs; weft's own per-ABI code is in src/arch/<abi>/) and
# WEFT_FCONTEXT_OBJECTS to the renamed object files. When cross-building
# (cmake/toolchain-aarch64-linux-gnu.cmake) the archive is the target's:
# Debian's multiarch libboost-context-dev:arm64 puts it in
# /usr/lib/aarch64-linux-gnu, and the objects taken must be that ABI's.

if(CMAKE_SYSTEM_PROCESSOR MATCHES "^(x86_64|AMD64|amd64)$")
  set(WEFT_FCONTEXT_ABI x86_64_sysv)
elseif(CMAKE_SYSTEM_PROCESSOR MATCHES "^(aarch64|arm64|ARM64)$")
  set(WEFT_FCONTEXT_ABI arm64_aapcs)
else()
  message(FATAL_ERROR "weft: no context-switch ABI for processor '${CMAKE_SYSTEM_PROCESSOR}' "
    "(supported: x86_64, aarch64; see src/arch/)")
endif()

set(WEFT_BOOST_CONTEXT_ARCHIVE "" CACHE FILEPATH
    "Path to libboost_context.a (found automatically when empty)")
if(NOT WEFT_BOOST_CONTEXT_ARCHIVE)
  find_library(WEFT_BOOST_CONTEXT_ARCHIVE_FOUND
    NAMES libboost_context.a
    PATHS /usr/lib/${CMAKE_LIBRARY_ARCHITECTURE} /usr/lib /usr/local/lib)
  set(WEFT_BOOST_CONTEXT_ARCHIVE "${WEFT_BOOST_CONTEXT_ARCHIVE_FOUND}")
endif()
if(NOT EXISTS "${WEFT_BOOST_CONTEXT_ARCHIVE}")
  if(CMAKE_CROSSCOMPILING AND CMAKE_LIBRARY_ARCHITECTURE)
    message(FATAL_ERROR "weft: libboost_context.a for ${CMAKE_LIBRARY_ARCHITECTURE} not found: install "
      "the target's Boost.Context (Debian: dpkg --add-architecture arm64; apt-get update; "
      "apt-get install libboost-context-dev:arm64), or set WEFT_BOOST_CONTEXT_ARCHIVE")
  endif()
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
    if(_m MATCHES "^${_kind}_${WEFT_FCONTEXT_ABI}_elf_gas\\.o$")
      set(_member ${_m})
    endif()
  endforeach()
  if(NOT _member)
    message(FATAL_ERROR "weft: ${WEFT_BOOST_CONTEXT_ARCHIVE} has no ${_kind}_${WEFT_FCONTEXT_ABI}_elf_gas.o: "
      "is it the archive for ${CMAKE_SYSTEM_PROCESSOR}? (members: ${_members})")
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
