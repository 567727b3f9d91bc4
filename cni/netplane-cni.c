/*
 * netplane CNI plugin, as a runtime runs it: the native thin client.
 *
 * A runtime starts the plugin once per pod, so its start-up is the pod's
 * time, and on a real node it runs from /opt/cni/bin on a host that may
 * have no Python at all. This program therefore depends on libc only
 * (the package build links it statically) and does no CNI work itself:
 * it hands the CNI_* environment, stdin and the pod's netns descriptor to
 * the node agent and relays the agent's answer. It is the twin of
 * netplane/cni/shim.py and speaks the same wire format:
 *
 *   request: "NPCNI1\n", a 4-byte big-endian length, the NUL-separated
 *            KEY=VALUE environment, then stdin; the netns descriptor rides
 *            on the first write as SCM_RIGHTS.
 *   reply:   the exit code in decimal, "\n", then the plugin's stdout.
 *
 * The agent's socket is abstract, so scoped to the network namespace: a
 * plugin run in a node's namespace reaches exactly that node's agent.
 * If no agent answers, it execs the standalone plugin when one was
 * installed, else answers CNI error 11 ("try again later").
 *
 * `netplane cni install` writes its settings into CONFIG below, in the
 * copy it installs: the socket address, then the standalone command's
 * argv, each NUL-terminated, an empty string closing the list.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#define MAGIC "NPCNI1\n"
#define MAGIC_LEN 7
#define REPLY_TIMEOUT_S 240
#define TRY_AGAIN_LATER 11
#define INTERNAL 999
#define CONFIG_MARK "NETPLANE-CNI-CONFIG-V1"
#define CONFIG_SIZE 4096

/* Volatile: the compiler must read what install wrote, not fold the default. */
volatile const char CONFIG[CONFIG_SIZE] = CONFIG_MARK "\0@netplane-cni\0\0";

extern char **environ;

struct buf {
    char *data;
    size_t len, cap;
};

static void put(struct buf *b, const void *data, size_t len)
{
    if (b->len + len > b->cap) {
        size_t cap = b->cap ? b->cap : 8192;
        while (cap < b->len + len)
            cap *= 2;
        char *grown = realloc(b->data, cap);
        if (!grown)
            abort();    /* out of memory on kilobytes: nothing sensible is left */
        b->data = grown;
        b->cap = cap;
    }
    memcpy(b->data + b->len, data, len);
    b->len += len;
}

static int read_fd(int fd, struct buf *b)
{
    char chunk[65536];
    for (;;) {
        ssize_t n = read(fd, chunk, sizeof chunk);
        if (n == 0)
            return 0;
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        put(b, chunk, (size_t)n);
    }
}

static int write_all(int fd, const char *data, size_t len)
{
    while (len) {
        ssize_t n = write(fd, data, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        data += n;
        len -= (size_t)n;
    }
    return 0;
}

/* The spec's error object; msg is ours, details may hold any text. */
static int fail(int code, const char *msg, const char *details)
{
    struct buf out = {0};
    char head[160];
    put(&out, head, (size_t)snprintf(head, sizeof head,
        "{\"cniVersion\": \"1.1.0\", \"code\": %d, \"msg\": \"%s\", \"details\": \"", code, msg));
    for (const unsigned char *p = (const unsigned char *)details; *p; p++) {
        char esc[8];
        if (*p == '"' || *p == '\\')
            put(&out, esc, (size_t)snprintf(esc, sizeof esc, "\\%c", *p));
        else if (*p < 0x20)
            put(&out, esc, (size_t)snprintf(esc, sizeof esc, "\\u%04x", *p));
        else
            put(&out, p, 1);
    }
    put(&out, "\"}\n", 3);
    write_all(1, out.data, out.len);
    return 1;
}

/* The installed settings: the socket address, then the standalone argv. */
static const char *config_socket(void)
{
    return (const char *)CONFIG + sizeof CONFIG_MARK;
}

static char **config_standalone(void)
{
    static char *argv[64];
    const char *p = config_socket();
    size_t n = 0;
    p += strlen(p) + 1;
    while (*p && n < 63) {
        argv[n++] = (char *)p;
        p += strlen(p) + 1;
    }
    argv[n] = NULL;
    return n ? argv : NULL;
}

static int connect_agent(const char *address)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    size_t len = strlen(address);
    if (len >= sizeof sa.sun_path) {
        errno = ENAMETOOLONG;
        return -1;
    }
    memcpy(sa.sun_path, address, len);
    if (address[0] == '@')
        sa.sun_path[0] = '\0';    /* '@name' is the abstract socket "\0name" */
    int sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (sock < 0)
        return -1;
    if (connect(sock, (struct sockaddr *)&sa, (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len)) < 0) {
        close(sock);
        return -1;
    }
    return sock;
}

/* Whether a later entry of environ has the same KEY= as *e. */
static int overridden(char **e)
{
    size_t key = strcspn(*e, "=") + 1;
    for (char **p = e + 1; *p; p++)
        if (strncmp(*p, *e, key) == 0)
            return 1;
    return 0;
}

/* A variable's value as Python's os.environ (the standalone path) reads
 * it: the last of duplicates, where getenv() would take the first. */
static const char *last_value(const char *name)
{
    size_t len = strlen(name);
    const char *value = NULL;
    for (char **e = environ; *e; e++)
        if (strncmp(*e, name, len) == 0 && (*e)[len] == '=')
            value = *e + len + 1;
    return value;
}

static void encode_request(struct buf *req, const struct buf *in)
{
    struct buf env = {0};
    for (char **e = environ; *e; e++) {
        /* A duplicated key counts once, the last, as in last_value(). */
        if (strncmp(*e, "CNI_", 4) != 0 || overridden(e))
            continue;
        if (env.len)
            put(&env, "", 1);
        put(&env, *e, strlen(*e));
    }
    uint32_t n = (uint32_t)env.len;
    unsigned char len[4] = {n >> 24, n >> 16, n >> 8, n};
    put(req, MAGIC, MAGIC_LEN);
    put(req, len, 4);
    if (env.len)
        put(req, env.data, env.len);
    if (in->len)
        put(req, in->data, in->len);
    free(env.data);
}

/* The whole request; the netns descriptor (if any) rides on the first byte. */
static int send_request(int sock, const struct buf *req, int netns_fd)
{
    struct iovec iov = {.iov_base = req->data, .iov_len = req->len};
    union {
        char space[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } control;
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
    if (netns_fd >= 0) {
        memset(&control, 0, sizeof control);
        msg.msg_control = control.space;
        msg.msg_controllen = sizeof control.space;
        struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(c), &netns_fd, sizeof(int));
    }
    ssize_t sent;
    do
        sent = sendmsg(sock, &msg, MSG_NOSIGNAL);
    while (sent < 0 && errno == EINTR);
    if (sent < 0)
        return -1;
    while ((size_t)sent < req->len) {
        ssize_t n = send(sock, req->data + sent, req->len - (size_t)sent, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        sent += n;
    }
    return shutdown(sock, SHUT_WR);
}

/* "<exit code>\n<stdout>": relays stdout, returns the exit code or -1. */
static int relay_reply(const struct buf *reply)
{
    const char *nl = reply->len ? memchr(reply->data, '\n', reply->len) : NULL;
    if (!nl || nl == reply->data || nl - reply->data > 9)
        return -1;
    int code = 0;
    for (const char *p = reply->data; p < nl; p++) {
        if (*p < '0' || *p > '9')
            return -1;
        code = code * 10 + (*p - '0');
    }
    size_t head = (size_t)(nl - reply->data) + 1;
    if (write_all(1, reply->data + head, reply->len - head) < 0)
        return 1;
    return code;
}

int main(void)
{
    const char *address = config_socket();
    int sock = connect_agent(address);
    if (sock < 0) {
        int why = errno;
        char **standalone = config_standalone();
        if (standalone) {
            execv(standalone[0], standalone);    /* no agent here: do the work in-process */
            char details[512];
            snprintf(details, sizeof details, "%.200s: %s", standalone[0], strerror(errno));
            return fail(INTERNAL, "cannot start the standalone netplane plugin", details);
        }
        char details[512];
        snprintf(details, sizeof details,
                 "nothing answers on %.200s in this network namespace (%s); start `netplane agent` on this node",
                 address, strerror(why));
        return fail(TRY_AGAIN_LATER, "the netplane agent is not running", details);
    }
    /* An agent that stops reading or answering costs the pod a timeout, not a hang. */
    struct timeval timeout = {.tv_sec = REPLY_TIMEOUT_S};
    setsockopt(sock, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
    setsockopt(sock, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof timeout);

    struct buf in = {0}, req = {0}, reply = {0};
    if (read_fd(0, &in) < 0)
        return fail(INTERNAL, "cannot read the network configuration", strerror(errno));
    encode_request(&req, &in);
    const char *netns = last_value("CNI_NETNS");
    /* A missing netns is the agent's to report (ADD), or to ignore (DEL). */
    int netns_fd = netns && *netns ? open(netns, O_RDONLY | O_CLOEXEC) : -1;
    if (send_request(sock, &req, netns_fd) < 0 || read_fd(sock, &reply) < 0)
        return fail(TRY_AGAIN_LATER, "the netplane agent did not answer", strerror(errno));
    int code = relay_reply(&reply);
    if (code < 0)
        return fail(TRY_AGAIN_LATER, "the netplane agent did not answer", "it hung up without a reply");
    return code;
}
