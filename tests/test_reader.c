/* test_reader.c — replay-file readers (stream/reader.c) on temporary files. */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>
#include <unistd.h>

#include "stream/reader.h"

#define MAXEV 16

typedef struct sink {
    int n;
    vg_event_t ev[MAXEV];
    int n_invalid;
    uint64_t bad_line[MAXEV];
    char bad_reason[MAXEV][256];
    int stop_after; /* 0 = never */
} sink_t;

static int on_event(const vg_event_t *ev, void *ud)
{
    sink_t *s = ud;
    if (s->n < MAXEV)
        s->ev[s->n] = *ev;
    s->n++;
    return s->stop_after && s->n >= s->stop_after ? 7 : 0;
}

static void on_invalid(uint64_t line, const char *reason, void *ud)
{
    sink_t *s = ud;
    if (s->n_invalid < MAXEV) {
        s->bad_line[s->n_invalid] = line;
        snprintf(s->bad_reason[s->n_invalid], sizeof s->bad_reason[0], "%s", reason);
    }
    s->n_invalid++;
}

static char path[64];
static sink_t sink;
static vg_reader_stats_t st;
static char err[512];

static void write_file(const char *data, size_t len)
{
    strcpy(path, "/tmp/vg-test-reader-XXXXXX");
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    cr_assert_eq(write(fd, data, len), (ssize_t)len);
    close(fd);
}
#define WRITE(lit) write_file(lit, sizeof(lit) - 1)

static void cleanup(void)
{
    if (path[0])
        unlink(path);
    path[0] = '\0';
}

static int run(vg_format_t fmt, int strict, double min_rating)
{
    vg_reader_opts_t o = {fmt, min_rating, strict, on_event, on_invalid, &sink};
    memset(&sink, 0, sizeof sink);
    memset(&st, 0xEE, sizeof st);
    strcpy(err, "untouched");
    return vg_reader_read(path, &o, &st, err, sizeof err);
}

TestSuite(reader, .fini = cleanup);

Test(reader, format_names)
{
    vg_format_t f = VG_FMT_JSON;
    cr_assert_eq(vg_format_from_name("ml1m", &f), 0);
    cr_assert_eq(f, VG_FMT_ML1M);
    cr_assert_eq(vg_format_from_name("mlcsv", &f), 0);
    cr_assert_eq(f, VG_FMT_MLCSV);
    cr_assert_eq(vg_format_from_name("ml100k", &f), 0);
    cr_assert_eq(f, VG_FMT_ML100K);
    cr_assert_eq(vg_format_from_name("JSON", &f), VG_EINVAL);
    cr_assert_eq(vg_format_from_name("parquet", &f), VG_EINVAL);
    cr_assert_eq(f, VG_FMT_ML100K);
    cr_assert_str_eq(vg_format_name(VG_FMT_CSV), "csv");
}

Test(reader, json_lines)
{
    WRITE("\xEF\xBB\xBF{\"user\":\"u1\",\"item\":\"i1\",\"ts\":1}\r\n"
          "\n"
          "   \t\n"
          "{\"user\":2,\"item\":\"i2\",\"ts\":2.5,\"type\":\"buy\"}\n"
          "{\"user\":\"u3\",\"item\":\"i3\",\"ts\":3}"); /* no final newline */
    cr_assert_eq(run(VG_FMT_JSON, 1, NAN), 0, "%s", err);
    cr_assert_str_eq(err, "");
    cr_assert_eq(st.lines, 5);
    cr_assert_eq(st.events, 3);
    cr_assert_eq(st.invalid, 0);
    cr_assert_eq(st.filtered, 0);
    cr_assert_eq(sink.n, 3);
    cr_assert_str_eq(sink.ev[0].user, "u1");
    cr_assert_str_eq(sink.ev[1].user, "2");
    cr_assert_str_eq(sink.ev[1].type, "buy");
    cr_assert_eq(sink.ev[1].ts, 2.5);
    cr_assert_str_eq(sink.ev[2].item, "i3");
    cr_assert_eq(sink.ev[2].has_rating, 0);
    cr_assert_eq(sink.ev[2].rating, 1.0);
}

Test(reader, json_not_filtered_by_min_rating)
{
    WRITE("{\"user\":\"u1\",\"item\":\"i1\",\"ts\":1}\n");
    cr_assert_eq(run(VG_FMT_JSON, 1, 4.0), 0, "%s", err);
    cr_assert_eq(st.events, 1);
    cr_assert_eq(st.filtered, 0);
}

Test(reader, csv_with_header_and_quotes)
{
    WRITE("user,item,ts\n"
          "u1,i1,100\n"
          "\"u,2\",\"i2\",200.5\r\n");
    cr_assert_eq(run(VG_FMT_CSV, 1, -INFINITY), 0, "%s", err);
    cr_assert_eq(st.lines, 3);
    cr_assert_eq(st.events, 2);
    cr_assert_str_eq(sink.ev[1].user, "u,2");
    cr_assert_str_eq(sink.ev[1].item, "i2");
    cr_assert_eq(sink.ev[1].ts, 200.5);
}

Test(reader, csv_header_only_on_first_line)
{
    WRITE("u1,i1,100\nuser,item,ts\n");
    cr_assert_eq(run(VG_FMT_CSV, 1, NAN), VG_EFORMAT);
    cr_assert(strstr(err, ":2: ts is not a number") != NULL, "%s", err);
}

Test(reader, ml100k_ratings_and_filter)
{
    WRITE("196\t242\t3\t881250949\n"
          "186\t302\t3\t891717742\n"
          "22\t377\t1\t878887116\n"
          "244\t51\t4.5\t880606923\n");
    cr_assert_eq(run(VG_FMT_ML100K, 1, NAN), 0, "%s", err);
    cr_assert_eq(st.events, 4);
    cr_assert_str_eq(sink.ev[0].user, "196");
    cr_assert_str_eq(sink.ev[0].item, "242");
    cr_assert_eq(sink.ev[0].rating, 3.0);
    cr_assert_eq(sink.ev[0].ts, 881250949.0);
    cr_assert_eq(sink.ev[0].has_rating, 1);
    cr_assert_str_eq(sink.ev[0].type, "click");
    cr_assert_eq(sink.ev[3].rating, 4.5);

    cr_assert_eq(run(VG_FMT_ML100K, 1, 3.5), 0, "%s", err);
    cr_assert_eq(st.events, 1);
    cr_assert_eq(st.filtered, 3);
    cr_assert_str_eq(sink.ev[0].user, "244");

    cr_assert_eq(run(VG_FMT_ML100K, 1, 3.0), 0, "%s", err); /* >= R is kept */
    cr_assert_eq(st.events, 3);
    cr_assert_eq(st.filtered, 1);
}

Test(reader, ml1m)
{
    WRITE("1::1193::5::978300760\n1::661::3::978302109\n");
    cr_assert_eq(run(VG_FMT_ML1M, 1, 4), 0, "%s", err);
    cr_assert_eq(st.events, 1);
    cr_assert_eq(st.filtered, 1);
    cr_assert_str_eq(sink.ev[0].item, "1193");
    cr_assert_eq(sink.ev[0].rating, 5.0);
    cr_assert_eq(sink.ev[0].ts, 978300760.0);
}

Test(reader, mlcsv)
{
    WRITE("userId,movieId,rating,timestamp\r\n"
          "1,31,2.5,1260759144\r\n"
          "\"1\",1029,3.0,1260759179\r\n");
    cr_assert_eq(run(VG_FMT_MLCSV, 1, NAN), 0, "%s", err);
    cr_assert_eq(st.lines, 3);
    cr_assert_eq(st.events, 2);
    cr_assert_str_eq(sink.ev[0].item, "31");
    cr_assert_eq(sink.ev[0].rating, 2.5);
    cr_assert_str_eq(sink.ev[1].user, "1");
    cr_assert_eq(sink.ev[1].ts, 1260759179.0);
}

Test(reader, mlcsv_needs_header)
{
    WRITE("1,31,2.5,1260759144\n");
    cr_assert_eq(run(VG_FMT_MLCSV, 1, NAN), VG_EFORMAT);
    cr_assert(strstr(err, ":1: expected the header line \"userId,movieId,rating,timestamp\"") != NULL,
              "%s", err);
}

Test(reader, strict_error_names_file_line_reason)
{
    WRITE("196\t242\t3\t881250949\n"
          "\n"
          "186\t302\tx\t891717742\n"
          "22\t377\t1\t878887116\n");
    cr_assert_eq(run(VG_FMT_ML100K, 1, NAN), VG_EFORMAT);
    char want[160];
    snprintf(want, sizeof want, "%s:3: field 3 (rating) is not a number: \"x\"", path);
    cr_assert_str_eq(err, want);
    cr_assert_eq(st.lines, 3);
    cr_assert_eq(st.events, 1);
    cr_assert_eq(sink.n, 1);
}

Test(reader, strict_bad_ids_and_timestamp)
{
    WRITE("196\t242\t3\t\n");
    cr_assert_eq(run(VG_FMT_ML100K, 1, NAN), VG_EFORMAT);
    cr_assert(strstr(err, ":1: field 4 (timestamp) is not a number: \"\"") != NULL, "%s", err);
    cleanup();
    WRITE("1:: 2::3::4\n");
    cr_assert_eq(run(VG_FMT_ML1M, 1, NAN), VG_EFORMAT);
    cr_assert(strstr(err, ":1: field 2 (item) has a space") != NULL, "%s", err);
    cleanup();
    WRITE("userId,movieId,rating,timestamp\n,2,3,4\n");
    cr_assert_eq(run(VG_FMT_MLCSV, 1, NAN), VG_EFORMAT);
    cr_assert(strstr(err, ":2: field 1 (user) is empty") != NULL, "%s", err);
}

Test(reader, wrong_format_fails_on_line_1)
{
    WRITE("{\"user\":\"u1\",\"item\":\"i1\",\"ts\":1}\n");
    cr_assert_eq(run(VG_FMT_ML100K, 1, NAN), VG_EFORMAT);
    cr_assert(strstr(err, ":1: expected 4 tab-separated fields") != NULL, "%s", err);
    cr_assert(strstr(err, "got 1") != NULL, "%s", err);
    cr_assert_eq(run(VG_FMT_ML1M, 1, NAN), VG_EFORMAT);
    cr_assert(strstr(err, ":1: expected 4 '::'-separated fields") != NULL, "%s", err);
    cr_assert_eq(run(VG_FMT_CSV, 1, NAN), VG_EFORMAT);
    cr_assert(strstr(err, ":1: ") != NULL, "%s", err);
    cleanup();
    WRITE("196\t242\t3\t881250949\n");
    cr_assert_eq(run(VG_FMT_JSON, 1, NAN), VG_EFORMAT);
    cr_assert(strstr(err, ":1: not JSON: ") != NULL, "%s", err);
    cr_assert_eq(run(VG_FMT_ML1M, 1, NAN), VG_EFORMAT);
    cr_assert(strstr(err, ":1: expected 4 '::'-separated fields") != NULL, "%s", err);
}

Test(reader, lenient_counts_and_reports)
{
    WRITE("{\"user\":\"u1\",\"item\":\"i1\",\"ts\":1}\n"
          "{not json\n"
          "{\"user\":\"u2\",\"ts\":2}\n"
          "\n"
          "{\"user\":\"u3\",\"item\":\"i3\",\"ts\":3}\n");
    cr_assert_eq(run(VG_FMT_JSON, 0, NAN), 0, "%s", err);
    cr_assert_eq(st.lines, 5);
    cr_assert_eq(st.events, 2);
    cr_assert_eq(st.invalid, 2);
    cr_assert_eq(sink.n, 2);
    cr_assert_str_eq(sink.ev[1].user, "u3");
    cr_assert_eq(sink.n_invalid, 2);
    cr_assert_eq(sink.bad_line[0], 2);
    cr_assert(strstr(sink.bad_reason[0], "not JSON") != NULL, "%s", sink.bad_reason[0]);
    cr_assert_eq(sink.bad_line[1], 3);
    cr_assert_str_eq(sink.bad_reason[1], "missing field \"item\"");
}

Test(reader, lenient_huge_line)
{
    size_t n = 1u << 20;
    char *buf = malloc(n + 128);
    cr_assert_not_null(buf);
    size_t o = (size_t)sprintf(buf, "u,");
    memset(buf + o, 'a', n);
    o += n;
    o += (size_t)sprintf(buf + o, ",1\nu,i,2\n");
    write_file(buf, o);
    free(buf);
    cr_assert_eq(run(VG_FMT_CSV, 0, NAN), 0, "%s", err);
    cr_assert_eq(st.invalid, 1);
    cr_assert_eq(st.events, 1);
    cr_assert_str_eq(sink.bad_reason[0], "item id is longer than 128 bytes");
    cr_assert_eq(sink.ev[0].ts, 2.0);
}

Test(reader, lenient_all_invalid_is_empty)
{
    WRITE("x\ny\n");
    cr_assert_eq(run(VG_FMT_ML100K, 0, NAN), VG_EEMPTY);
    cr_assert_eq(st.invalid, 2);
    cr_assert(strstr(err, "no events") != NULL, "%s", err);
    cr_assert(strstr(err, "2 invalid") != NULL, "%s", err);
}

Test(reader, all_filtered_is_empty)
{
    WRITE("1::2::1::3\n");
    cr_assert_eq(run(VG_FMT_ML1M, 1, 4), VG_EEMPTY);
    cr_assert_eq(st.filtered, 1);
    cr_assert(strstr(err, "1 filtered") != NULL, "%s", err);
}

Test(reader, missing_file)
{
    path[0] = '\0';
    vg_reader_opts_t o = {VG_FMT_JSON, NAN, 1, on_event, NULL, &sink};
    int rc = vg_reader_read("/nonexistent/vg-no-such-file", &o, &st, err, sizeof err);
    cr_assert_eq(rc, VG_EIO);
    cr_assert_str_eq(err, "cannot open /nonexistent/vg-no-such-file: No such file or directory");
    cr_assert_eq(st.lines, 0);
}

Test(reader, directory_is_read_error)
{
    path[0] = '\0';
    vg_reader_opts_t o = {VG_FMT_JSON, NAN, 1, on_event, NULL, &sink};
    int rc = vg_reader_read("/tmp", &o, &st, err, sizeof err);
    cr_assert(rc == VG_EIO, "rc %d: %s", rc, err);
    cr_assert(strstr(err, "/tmp") != NULL, "%s", err);
}

Test(reader, empty_file)
{
    WRITE("");
    cr_assert_eq(run(VG_FMT_JSON, 1, NAN), VG_EEMPTY);
    char want[128];
    snprintf(want, sizeof want, "%s: no events", path);
    cr_assert_str_eq(err, want);
    cleanup();
    WRITE("\n\r\n  \n");
    cr_assert_eq(run(VG_FMT_CSV, 0, NAN), VG_EEMPTY);
    cr_assert_eq(st.lines, 3);
    cr_assert_eq(st.invalid, 0);
    cleanup();
    WRITE("userId,movieId,rating,timestamp\n");
    cr_assert_eq(run(VG_FMT_MLCSV, 1, NAN), VG_EEMPTY);
}

Test(reader, callback_stops_the_read)
{
    WRITE("a,b,1\nc,d,2\ne,f,3\n");
    vg_reader_opts_t o = {VG_FMT_CSV, NAN, 1, on_event, NULL, &sink};
    memset(&sink, 0, sizeof sink);
    sink.stop_after = 2;
    int rc = vg_reader_read(path, &o, &st, err, sizeof err);
    cr_assert_eq(rc, 7);
    cr_assert_eq(sink.n, 2);
    cr_assert_eq(st.events, 2);
    cr_assert_eq(st.lines, 2);
}

Test(reader, null_callbacks_and_stats)
{
    WRITE("a,b,1\nbad\n");
    vg_reader_opts_t o = {VG_FMT_CSV, NAN, 0, NULL, NULL, NULL};
    cr_assert_eq(vg_reader_read(path, &o, NULL, NULL, 0), 0);
    cr_assert_eq(vg_reader_read(NULL, &o, NULL, NULL, 0), VG_EINVAL);
    o.format = (vg_format_t)99;
    cr_assert_eq(vg_reader_read(path, &o, NULL, err, sizeof err), VG_EINVAL);
}

/* The stats are current during the read (progress): a callback sees the
 * bytes read so far, line ends included, and the file's size. */
static uint64_t bytes_seen[4], size_seen;
static int live_event(const vg_event_t *ev, void *ud)
{
    (void)ev;
    const vg_reader_stats_t *live = ud;
    if (live->events <= 4)
        bytes_seen[live->events - 1] = live->bytes;
    size_seen = live->size;
    return 0;
}

Test(reader, bytes_and_size_as_it_goes)
{
    WRITE("a,b,1\r\n\nccc,d,2\nbad\ne,f,3"); /* CRLF, a blank line, a bad line, no final newline */
    vg_reader_opts_t o = {VG_FMT_CSV, NAN, 0, live_event, NULL, &st};
    cr_assert_eq(vg_reader_read(path, &o, &st, err, sizeof err), 0, "%s", err);
    cr_assert_eq(st.events, 3);
    cr_assert_eq(bytes_seen[0], 7, "a,b,1\\r\\n");
    cr_assert_eq(bytes_seen[1], 7 + 1 + 8, "then the blank line and ccc,d,2\\n");
    cr_assert_eq(bytes_seen[2], 7 + 1 + 8 + 4 + 5, "then bad\\n and e,f,3");
    cr_assert_eq(size_seen, 25);
    cr_assert_eq(st.bytes, 25);
    cr_assert_eq(st.size, 25);
}

Test(reader, no_size_from_a_pipe)
{
    int fds[2];
    cr_assert_eq(pipe(fds), 0);
    cr_assert_eq(write(fds[1], "a,b,1\n", 6), 6);
    close(fds[1]);
    cr_assert_eq(dup2(fds[0], STDIN_FILENO), STDIN_FILENO);
    close(fds[0]);
    vg_reader_opts_t o = {VG_FMT_CSV, NAN, 1, NULL, NULL, NULL};
    cr_assert_eq(vg_reader_read("-", &o, &st, err, sizeof err), 0, "%s", err);
    cr_assert_eq(st.bytes, 6);
    cr_assert_eq(st.size, 0, "a pipe has no size");
}
