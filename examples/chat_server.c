/* chat_server.c - a TCP chat room: every line a client sends goes to every
 * other client. One fiber reads each client; one hub fiber owns the list
 * of clients and hears about joins, lines and departures through a channel;
 * one writer fiber per client drains that client's outbox channel. A slow
 * client whose outbox is full misses lines instead of stalling the room.
 *
 *   ./chat_server [host:port]     default 127.0.0.1:7008; stop with Ctrl-C
 *   ./chat_server --selftest      runs a room and three scripted clients
 *
 * Try it with two terminals running `nc 127.0.0.1 7008`.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <weft.h>

#define LINE_MAX_LEN 256
#define OUTBOX 64

struct line { char text[LINE_MAX_LEN]; };

struct client {
    int fd;
    int id;
    weft_chan *outbox;          /* struct line, written by the hub */
    struct client *next;        /* the hub's list */
};

enum event_kind { JOIN, SAY, LEAVE };
struct event {
    enum event_kind kind;
    struct client *who;
    struct line line;
};

static weft_chan *events;       /* struct event, read by the hub */
static weft_group *room;        /* every fiber of the room, for shutdown */

/* The hub: the only fiber that touches the client list. */
static void *hub(void *arg)
{
    (void)arg;
    struct client *clients = NULL;
    struct event ev;
    while (weft_chan_recv(events, &ev, WEFT_FOREVER) == 0) {
        if (ev.kind == JOIN) {
            ev.who->next = clients;
            clients = ev.who;
            snprintf(ev.line.text, sizeof ev.line.text, "* user%d joined\n", ev.who->id);
        } else if (ev.kind == LEAVE) {
            for (struct client **p = &clients; *p; p = &(*p)->next)
                if (*p == ev.who) {
                    *p = ev.who->next;
                    break;
                }
            weft_chan_close(ev.who->outbox); /* its writer finishes and frees it */
            snprintf(ev.line.text, sizeof ev.line.text, "* user%d left\n", ev.who->id);
        }
        for (struct client *c = clients; c; c = c->next)
            if (c != ev.who)
                weft_chan_send(c->outbox, &ev.line, 0); /* full: this one misses it */
    }
    return NULL;
}

/* Drains one client's outbox to its socket, then releases the client. */
static void *writer(void *arg)
{
    struct client *c = arg;
    struct line l;
    while (weft_chan_recv(c->outbox, &l, WEFT_FOREVER) == 0)
        if (weft_write_all(c->fd, l.text, strlen(l.text), weft_deadline_ms(5000)) < 0)
            break;
    weft_close(c->fd);
    weft_chan_free(c->outbox);
    free(c);
    return NULL;
}

/* Reads one client's lines and hands them to the hub. */
static void *reader(void *arg)
{
    struct client *c = arg;
    struct event ev = { .kind = SAY, .who = c };
    char buf[LINE_MAX_LEN];
    size_t used = 0;
    int prefix = snprintf(ev.line.text, sizeof ev.line.text, "user%d: ", c->id);
    for (;;) {
        ssize_t n = weft_read(c->fd, buf + used, sizeof buf - 1 - used, WEFT_FOREVER);
        if (n <= 0)
            break;
        used += (size_t)n;
        char *nl;
        while ((nl = memchr(buf, '\n', used)) != NULL) {
            size_t len = (size_t)(nl - buf) + 1;
            snprintf(ev.line.text + prefix, sizeof ev.line.text - (size_t)prefix, "%.*s",
                     (int)len, buf);
            weft_chan_send(events, &ev, WEFT_FOREVER);
            memmove(buf, buf + len, used - len);
            used -= len;
        }
        if (used == sizeof buf - 1)
            used = 0; /* a line too long for the room is dropped */
    }
    ev.kind = LEAVE;
    weft_shutdown(c->fd, SHUT_RD);
    /* Even when cancelled, the hub must hear of the departure; a zero
     * deadline still delivers if the hub has room. */
    if (weft_chan_send(events, &ev, WEFT_FOREVER) < 0)
        weft_chan_send(events, &ev, 0);
    return NULL;
}

static void *acceptor(void *arg)
{
    int lfd = *(int *)arg, next_id = 1;
    for (;;) {
        int fd = weft_accept(lfd, NULL, NULL, WEFT_FOREVER);
        if (fd == -ECANCELED || fd == -EBADF)
            break;
        if (fd < 0)
            continue; /* -EMFILE and friends: weft already backed off */
        struct client *c = calloc(1, sizeof *c);
        if (!c || weft_chan_open(&c->outbox, sizeof(struct line), OUTBOX) != 0) {
            free(c);
            weft_close(fd);
            continue;
        }
        c->fd = fd;
        c->id = next_id++;
        struct event ev = { .kind = JOIN, .who = c };
        weft_chan_send(events, &ev, WEFT_FOREVER);
        weft_group_spawn(room, NULL, writer, c);
        weft_group_spawn(room, NULL, reader, c);
    }
    return NULL;
}

static int open_room(const char *where, int *lfd)
{
    int r;
    if ((r = weft_chan_open(&events, sizeof(struct event), 128)) != 0 ||
        (r = weft_group_open(&room)) != 0)
        return r;
    if ((*lfd = weft_tcp_listen(where, 128)) < 0)
        return *lfd;
    weft_group_spawn(room, NULL, hub, NULL);
    return weft_group_spawn(room, NULL, acceptor, lfd);
}

static void close_room(int lfd)
{
    weft_close(lfd);                  /* wakes the acceptor with -EBADF */
    weft_group_cancel(room);
    weft_group_wait(room, weft_deadline_ms(2000));
    weft_chan_close(events);
    weft_group_wait(room, WEFT_FOREVER);
    weft_group_free(room);
    weft_chan_free(events);
}

/* ----------------------------------------------------------------- serve */

static void serve(void *arg)
{
    const char *where = arg;
    int lfd, r = open_room(where, &lfd);
    if (r < 0) {
        fprintf(stderr, "chat_server: %s: %s\n", where, weft_strerror(r));
        exit(1);
    }
    char addr[128];
    weft_local_addr(lfd, addr, sizeof addr);
    printf("chat room on %s (Ctrl-C stops it)\n", addr);
    fflush(stdout);
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    r = weft_signal_wait(&stop, WEFT_FOREVER);
    printf("signal %d: closing the room\n", r);
    close_room(lfd);
}

/* -------------------------------------------------------------- selftest */

static int expect_line(int fd, const char *want)
{
    char buf[LINE_MAX_LEN];
    size_t used = 0;
    while (used < sizeof buf - 1) {
        ssize_t n = weft_read(fd, buf + used, 1, weft_deadline_ms(2000));
        if (n <= 0)
            return -1;
        if (buf[used++] == '\n')
            break;
    }
    buf[used] = 0;
    if (strcmp(buf, want) != 0) {
        fprintf(stderr, "selftest: got \"%s\", wanted \"%s\"\n", buf, want);
        return -1;
    }
    return 0;
}

static int failed;
static void selftest(void *arg)
{
    (void)arg;
    int lfd, c[3];
    char addr[128];
    if (open_room("127.0.0.1:0", &lfd) < 0 || weft_local_addr(lfd, addr, sizeof addr) < 0) {
        failed = 1;
        return;
    }
    for (int i = 0; i < 3; i++) {
        c[i] = weft_tcp_connect(addr, weft_deadline_ms(2000));
        if (c[i] < 0) {
            failed = 1;
            return;
        }
        weft_sleep_ms(20); /* let the room see them join in order */
    }
    const char *hello = "hello room\n";
    failed |= expect_line(c[0], "* user2 joined\n") | expect_line(c[0], "* user3 joined\n") |
              expect_line(c[1], "* user3 joined\n");
    failed |= weft_write_all(c[0], hello, strlen(hello), weft_deadline_ms(2000)) < 0;
    failed |= expect_line(c[1], "user1: hello room\n") | expect_line(c[2], "user1: hello room\n");
    weft_close(c[2]);
    failed |= expect_line(c[0], "* user3 left\n") | expect_line(c[1], "* user3 left\n");
    weft_close(c[0]);
    weft_close(c[1]);
    close_room(lfd);
    printf("chat selftest: %s\n", failed ? "FAILED" : "ok");
}

int main(int argc, char **argv)
{
    int test = argc > 1 && strcmp(argv[1], "--selftest") == 0;
    int r = weft_run(NULL, test ? selftest : serve,
                     (void *)(argc > 1 && !test ? argv[1] : "127.0.0.1:7008"));
    if (r) {
        fprintf(stderr, "weft_run: %s\n", weft_strerror(r));
        return 1;
    }
    return failed;
}
