/* support_tmpfile.c - see tmpfile.h. */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tmpfile.h"

char *test_write_tmp(const char *text)
{
        char *path = strdup("/tmp/veil-test-XXXXXX");
        int fd     = mkstemp(path);
        FILE *fp;

        cr_assert_geq(fd, 0);
        fp = fdopen(fd, "w");
        cr_assert_not_null(fp);
        fputs(text, fp);
        fclose(fp);
        return path;
}
