/* tmpfile.h - config text written to a temporary file, for loader tests. */
#ifndef VEIL_TESTS_TMPFILE_H
#define VEIL_TESTS_TMPFILE_H

/* text in a new file /tmp/veil-test-XXXXXX; its path, to unlink and free.
 * Fails the running test when the file cannot be written. */
char *test_write_tmp(const char *text);

#endif
