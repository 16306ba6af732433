/* check_leaks.h: the leak check shared by the unit suites that need it. */
#ifndef STARLING_TEST_CHECK_LEAKS_H
#define STARLING_TEST_CHECK_LEAKS_H

#include <criterion/criterion.h>

/* Criterion's workers exit without LeakSanitizer's exit-time check, so a
 * sanitized build asks for the check explicitly at the end of each test. */
#if defined(__SANITIZE_ADDRESS__)
#define HAVE_LSAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define HAVE_LSAN 1
#endif
#endif
#ifdef HAVE_LSAN
#include <sanitizer/lsan_interface.h>
#endif

static inline void check_leaks(void)
{
#ifdef HAVE_LSAN
    cr_assert_eq(__lsan_do_recoverable_leak_check(), 0, "memory leaked (report on stderr)");
#endif
}

#endif
