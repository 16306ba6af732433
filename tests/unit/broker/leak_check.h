/* leak_check: Criterion's workers exit without LeakSanitizer's exit-time check,
 * so sanitized builds call check_leaks() at the end of each test instead. */
#ifndef STARLING_TESTS_BROKER_LEAK_CHECK_H
#define STARLING_TESTS_BROKER_LEAK_CHECK_H

#include <criterion/criterion.h>

#if defined(__SANITIZE_ADDRESS__)
#define STARLING_HAVE_LSAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define STARLING_HAVE_LSAN 1
#endif
#endif

#ifdef STARLING_HAVE_LSAN
#include <sanitizer/lsan_interface.h>
#define check_leaks() cr_assert_eq(__lsan_do_recoverable_leak_check(), 0, "memory leaked (report on stderr)")
#else
#define check_leaks() ((void)0)
#endif

#endif
