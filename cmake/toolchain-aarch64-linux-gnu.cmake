# toolchain-aarch64-linux-gnu.cmake - cross-builds weft for Linux on arm64
# with Debian's cross compiler (gcc-aarch64-linux-gnu), against Debian's
# multiarch arm64 packages: libboost-context-dev:arm64 and check:arm64
# (dpkg --add-architecture arm64; apt-get update; apt-get install ...).
# scripts/test.sh's arm64 stage installs all of it and uses this file:
#
#   cmake -S . -B build/arm64 -DCMAKE_TOOLCHAIN_FILE=cmake/toolchain-aarch64-linux-gnu.cmake
#
# The test programs then run under qemu-user: CMAKE_CROSSCOMPILING_EMULATOR
# defaults to qemu-aarch64 when it is installed, and ctest runs every test
# through it. The multiarch libc6:arm64 puts the arm64 dynamic loader at
# /lib/ld-linux-aarch64.so.1 and its libraries in /usr/lib/aarch64-linux-gnu,
# where the emulated loader finds them with no -L prefix.

set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_LIBRARY_ARCHITECTURE aarch64-linux-gnu)

set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)
set(CMAKE_ASM_COMPILER aarch64-linux-gnu-gcc)

# Debian's multiarch layout has no sysroot: the arm64 libraries and .pc
# files sit beside the host's under /usr. Programs (objcopy, ar, ...) are
# the host's or the cross binutils' found by their prefix.
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)

# pkg-config (the Check suites find check through it) must see the arm64
# .pc files only, never the host's.
set(ENV{PKG_CONFIG_LIBDIR} "/usr/lib/aarch64-linux-gnu/pkgconfig:/usr/share/pkgconfig")
set(ENV{PKG_CONFIG_PATH} "")

if(NOT DEFINED CMAKE_CROSSCOMPILING_EMULATOR)
  find_program(WEFT_QEMU_AARCH64 qemu-aarch64)
  if(WEFT_QEMU_AARCH64)
    set(CMAKE_CROSSCOMPILING_EMULATOR "${WEFT_QEMU_AARCH64}" CACHE STRING
        "Runs the arm64 test programs (qemu-user)")
  endif()
endif()
