/* weft/export.h - symbol export and language linkage for the public headers. */
#ifndef WEFT_EXPORT_H
#define WEFT_EXPORT_H

#if defined(_WIN32) && defined(WEFT_SHARED)
#  if defined(WEFT_BUILDING)
#    define WEFT_API __declspec(dllexport)
#  else
#    define WEFT_API __declspec(dllimport)
#  endif
#elif defined(__GNUC__) || defined(__clang__)
#  define WEFT_API __attribute__((visibility("default")))
#else
#  define WEFT_API
#endif

#ifdef __cplusplus
#  define WEFT_BEGIN_DECLS extern "C" {
#  define WEFT_END_DECLS }
#else
#  define WEFT_BEGIN_DECLS
#  define WEFT_END_DECLS
#endif

#endif
