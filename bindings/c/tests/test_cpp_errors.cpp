// Tests of the C++ wrapper's errors (bindings/c/include/fal_realtime.hpp):
// every fal::rt::Error carries the library's full message (what()) and its
// kind, HTTP status, close code and body, and the C error behind it is freed
// exactly once (run under ASan and valgrind by scripts/test-c.sh).
//
// Needs no server except the emulator: FAL_RT_EMULATOR=127.0.0.1:PORT.
// Usage: test_cpp_errors [TEST...]   (all tests without arguments)
// Prints "ok - NAME" / "FAIL - NAME" per test, then "N passed, M failed".
#include <fal_realtime.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace rt = fal::rt;

namespace {

// Generous: the tests also run under valgrind, 20-50x slower.
constexpr auto kWait = std::chrono::seconds(60);

int g_failures = 0;

#define CHECK(cond)                                                                      \
    do {                                                                                 \
        if (!(cond)) {                                                                   \
            std::fprintf(stderr, "    CHECK failed %s:%d: %s\n", __FILE__, __LINE__, #cond); \
            g_failures++;                                                                \
            return;                                                                      \
        }                                                                                \
    } while (0)

bool contains(const std::string& haystack, const char* needle) {
    return haystack.find(needle) != std::string::npos;
}

// Run `f`, which must throw fal::rt::Error; the error is stored in `out`.
template <class F>
bool throws(F&& f, std::unique_ptr<rt::Error>& out) {
    try {
        f();
    } catch (const rt::Error& e) {
        out = std::make_unique<rt::Error>(e);
        std::fprintf(stderr, "    (%s, status %u, close %u): %s\n", e.kind_name(), e.status(), e.close_code(),
                     e.what());
        return true;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "    unexpected exception: %s\n", e.what());
        return false;
    }
    std::fprintf(stderr, "    nothing was thrown\n");
    return false;
}

// What every error must satisfy: a message beyond the bare kind name.
bool full_message(const rt::Error& e) {
    std::string what = e.what();
    return !what.empty() && what != e.kind_name() && what.size() > std::strlen(e.kind_name());
}

std::string emulator() {
    const char* h = std::getenv("FAL_RT_EMULATOR");
    if (h == nullptr || h[0] == '\0') {
        std::fprintf(stderr, "set FAL_RT_EMULATOR=127.0.0.1:PORT\n");
        std::exit(2);
    }
    return h;
}

rt::ClientOptions options_for(const std::string& hostport, const std::string& key) {
    rt::ClientOptions o;
    o.key = key;
    o.run_host = "ws://" + hostport;
    o.rest_url = "http://" + hostport;
    o.allow_insecure = true;
    o.open_timeout = std::chrono::milliseconds(30000);
    o.token_retries = -1;
    return o;
}

// A 127.0.0.1 port nothing listens on (bound, then released).
int closed_port() {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return -1;
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = 0;
    socklen_t len = sizeof a;
    int port = -1;
    if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0)
        port = ntohs(a.sin_port);
    ::close(fd);
    return port;
}

// ---------------------------------------------------------------------------

void test_error_from_null() {
    rt::Error e = rt::Error::from(nullptr, FAL_RT_NOT_CONNECTED);
    CHECK(e.kind() == FAL_RT_NOT_CONNECTED);
    CHECK(std::strcmp(e.kind_name(), "not_connected") == 0);
    CHECK(e.status() == 0 && e.close_code() == 0 && e.body().empty());
}

void test_client_invalid_argument() {
    rt::ClientOptions o;
    o.key = "k";
    o.run_host = "ws://emulator.invalid:1";  // plain ws:// off loopback needs allow_insecure
    o.rest_url = "http://emulator.invalid:1";
    std::unique_ptr<rt::Error> e;
    CHECK(throws([&] { rt::Client c(o); }, e));
    CHECK(e->kind() == FAL_RT_INVALID_ARGUMENT);
    CHECK(std::strcmp(e->kind_name(), "invalid_argument") == 0);
    CHECK(full_message(*e));
    CHECK(contains(e->what(), "allow_insecure"));
    CHECK(e->status() == 0 && e->close_code() == 0);
}

void test_bad_app_id() {
    rt::Client client(options_for(emulator(), "test-key"));
    // The handlers are owned by the library from the connect on: whatever
    // happens, they are destroyed exactly once (the token's count drops back).
    auto token = std::make_shared<int>(0);
    {
        rt::Handlers h;
        h.on_result = [token](const rt::MessageView&) {};
        std::unique_ptr<rt::Error> e;
        CHECK(throws([&] { rt::Realtime conn(client, "not-an-app-id", h); }, e));
        CHECK(e->kind() == FAL_RT_INVALID_ARGUMENT);
        CHECK(full_message(*e));
        CHECK(contains(e->what(), "Invalid app id"));
    }
    CHECK(token.use_count() == 1);

    std::unique_ptr<rt::Error> e;
    CHECK(throws([&] { rt::Session s(client, "bad id"); }, e));
    CHECK(e->kind() == FAL_RT_INVALID_ARGUMENT);
    CHECK(contains(e->what(), "Invalid app id"));
    CHECK(throws([&] { rt::Ws w(client, ""); }, e));
    CHECK(e->kind() == FAL_RT_INVALID_ARGUMENT);
    CHECK(full_message(*e));
}

void test_bad_connect_options() {
    rt::Client client(options_for(emulator(), "test-key"));
    rt::ConnectOptions o;
    o.max_buffering = 61;
    std::unique_ptr<rt::Error> e;
    CHECK(throws([&] { rt::Session s(client, "demo/echo", o); }, e));
    CHECK(e->kind() == FAL_RT_INVALID_ARGUMENT);
    CHECK(contains(e->what(), "max_buffering"));
}

void test_missing_credentials() {
    ::unsetenv("FAL_KEY");
    ::unsetenv("FAL_KEY_ID");
    ::unsetenv("FAL_KEY_SECRET");
    rt::Client client(options_for(emulator(), ""));  // no key: from the (empty) environment
    std::unique_ptr<rt::Error> e;
    CHECK(throws([&] { rt::Realtime conn(client, "demo/echo", rt::Handlers{}); }, e));
    CHECK(e->kind() == FAL_RT_CREDENTIALS);
    CHECK(std::strcmp(e->kind_name(), "credentials") == 0);
    CHECK(full_message(*e));
    CHECK(contains(e->what(), "FAL_KEY"));
    CHECK(throws([&] { rt::Session s(client, "demo/echo"); }, e));
    CHECK(e->kind() == FAL_RT_CREDENTIALS);
    CHECK(contains(e->what(), "FAL_KEY"));
}

void test_wrong_key_session() {
    rt::Client client(options_for(emulator(), "wrong-key"));
    std::unique_ptr<rt::Error> e;
    CHECK(throws([&] { rt::Session s(client, "demo/echo"); }, e));
    CHECK(e->kind() == FAL_RT_AUTH);
    CHECK(std::strcmp(e->kind_name(), "auth") == 0);
    CHECK(e->status() == 401);
    CHECK(full_message(*e));
    CHECK(contains(e->what(), "rejected the API key"));
    CHECK(!contains(e->what(), "wrong-key"));  // never the key
    CHECK(contains(e->body(), "Unauthorized"));
}

void test_wrong_key_realtime_callback() {
    rt::Client client(options_for(emulator(), "wrong-key"));
    std::mutex mu;
    std::condition_variable cv;
    std::vector<rt::Error> errors;
    rt::Handlers h;
    h.on_error = [&](const rt::Error& e) {  // a borrowed C error, copied
        std::lock_guard<std::mutex> g(mu);
        errors.push_back(e);
        cv.notify_all();
    };
    rt::ConnectOptions o;
    o.throttle_ms = FAL_RT_THROTTLE_NONE;
    rt::Realtime conn(client, "demo/echo", h, o);  // lazy: connects on the first send
    conn.send_json(R"({"x":1})");
    std::unique_lock<std::mutex> lk(mu);
    CHECK(cv.wait_for(lk, kWait, [&] { return !errors.empty(); }));
    const rt::Error& e = errors.front();
    std::fprintf(stderr, "    on_error (%s, status %u): %s\n", e.kind_name(), e.status(), e.what());
    CHECK(e.kind() == FAL_RT_AUTH);
    CHECK(e.status() == 401);
    CHECK(full_message(e));
    CHECK(contains(e.what(), "rejected the API key"));
}

void test_closed_port_connect() {
    int port = closed_port();
    CHECK(port > 0);
    rt::Client client(options_for("127.0.0.1:" + std::to_string(port), "test-key"));
    // The token request fails to connect.
    std::unique_ptr<rt::Error> e;
    CHECK(throws([&] { rt::Session s(client, "demo/echo"); }, e));
    CHECK(e->kind() == FAL_RT_CONNECT);
    CHECK(std::strcmp(e->kind_name(), "connect") == 0);
    CHECK(full_message(*e));
    CHECK(contains(e->what(), std::to_string(port).c_str()));
    CHECK(e->status() == 0);
    // The WebSocket itself fails to connect (header auth: no token request).
    rt::ConnectOptions o;
    o.header_auth = true;
    CHECK(throws([&] { rt::Ws w(client, "demo/echo", o); }, e));
    CHECK(e->kind() == FAL_RT_CONNECT);
    CHECK(full_message(*e));
    CHECK(contains(e->what(), std::to_string(port).c_str()));
}

void test_ws_close_code() {
    rt::Client client(options_for(emulator(), "test-key"));
    rt::ConnectOptions o;
    o.path = "/realtime";
    rt::Ws ws(client, "demo/control", o);
    // msgpack {"do": "close", "code": 4002}: the emulator closes with that code.
    const unsigned char close_cmd[] = {0x82, 0xa2, 'd', 'o', 0xa5, 'c', 'l', 'o', 's', 'e',
                                       0xa4, 'c',  'o', 'd', 'e', 0xcd, 0x0f, 0xa2};
    ws.send_binary(close_cmd, sizeof close_cmd);
    std::unique_ptr<rt::Error> e;
    CHECK(throws([&] { ws.recv(kWait); }, e));
    CHECK(e->kind() == FAL_RT_CLOSED);
    CHECK(e->close_code() == 4002);
    CHECK(full_message(*e));
    CHECK(ws.close_code() == 4002);
}

void test_ws_close_with_and_interrupt() {
    rt::Client client(options_for(emulator(), "test-key"));
    rt::ConnectOptions o;
    o.path = "/raw";
    rt::Ws ws(client, "demo/echo", o);
    CHECK(ws.close_code() == 0 && !ws.close_reason());
    ws.interrupt();
    CHECK(!ws.recv(kWait)); /* interrupted: returns at once, the socket goes on */
    std::unique_ptr<rt::Error> e;
    CHECK(throws([&] { ws.close_with(1005, ""); }, e));
    CHECK(e->kind() == FAL_RT_INVALID_ARGUMENT);
    CHECK(full_message(*e));
    CHECK(throws([&] { ws.close_with(4000, std::string(124, 'x')); }, e));
    CHECK(e->kind() == FAL_RT_INVALID_ARGUMENT);
    ws.close_with(4001, "see you");
    /* The server's reply (4001, not a normal close) ends the socket. */
    try {
        CHECK(!ws.recv(kWait));
    } catch (const rt::Error& err) {
        CHECK(err.kind() == FAL_RT_CLOSED && err.close_code() == 4001);
    }
    CHECK(ws.close_code() == 4001);
    CHECK(ws.close_reason() && *ws.close_reason() == "see you");
}

struct TestCase {
    const char* name;
    void (*fn)();
};

const TestCase kTests[] = {
    {"error_from_null", test_error_from_null},
    {"client_invalid_argument", test_client_invalid_argument},
    {"bad_app_id", test_bad_app_id},
    {"bad_connect_options", test_bad_connect_options},
    {"missing_credentials", test_missing_credentials},
    {"wrong_key_session", test_wrong_key_session},
    {"wrong_key_realtime_callback", test_wrong_key_realtime_callback},
    {"closed_port_connect", test_closed_port_connect},
    {"ws_close_code", test_ws_close_code},
    {"ws_close_with_and_interrupt", test_ws_close_with_and_interrupt},
};

}  // namespace

int main(int argc, char** argv) {
    int passed = 0, failed = 0;
    for (const TestCase& t : kTests) {
        bool selected = argc <= 1;
        for (int a = 1; a < argc; a++)
            if (std::strcmp(argv[a], t.name) == 0) selected = true;
        if (!selected) continue;
        int before = g_failures;
        try {
            t.fn();
        } catch (const std::exception& e) {
            std::fprintf(stderr, "    uncaught exception: %s\n", e.what());
            g_failures++;
        }
        if (g_failures == before) {
            std::printf("ok - %s\n", t.name);
            passed++;
        } else {
            std::printf("FAIL - %s\n", t.name);
            failed++;
        }
        std::fflush(stdout);
    }
    std::printf("%d passed, %d failed\n", passed, failed);
    return failed == 0 ? 0 : 1;
}
