// fal_realtime.hpp: a header-only C++17 RAII wrapper over the C API in
// fal_realtime.h. Handles are move-only and freed by their destructors;
// failures throw fal::rt::Error; callbacks are std::function.
//
// Threads are those of the C API: realtime and WebSocket callbacks run on the
// library's worker threads, never concurrently for one connection. A callback
// may call send()/close() on any connection. Do not let an exception escape a
// callback: the wrapper catches it (the C boundary cannot unwind) and drops it.
//
//   fal::rt::ClientOptions o;              // empty: FAL_KEY and fal.run
//   fal::rt::Client client(o);
//   fal::rt::Handlers h;
//   h.on_result = [](const fal::rt::MessageView& m) { puts(m.json().c_str()); };
//   fal::rt::Realtime conn(client, "fal-ai/fast-lcm-diffusion", h);
//   conn.send_json(R"({"prompt": "a cat"})");
#ifndef FAL_REALTIME_HPP
#define FAL_REALTIME_HPP

#include "fal_realtime.h"

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>

namespace fal::rt {

/// A failed call or an error reported to a callback.
class Error : public std::runtime_error {
public:
    Error(fal_rt_result kind, const std::string& message, uint16_t status = 0, uint16_t close_code = 0,
          std::string body = {})
        : std::runtime_error(message), kind_(kind), status_(status), close_code_(close_code),
          body_(std::move(body)) {}

    /// Copy a C error (borrowed or owned; the caller keeps ownership). Without
    /// one (NULL), the error of kind `fallback` whose message is the kind's name.
    static Error from(const fal_rt_error* e, fal_rt_result fallback = FAL_RT_INTERNAL) {
        if (e == nullptr) return Error(fallback, fal_rt_result_name(fallback));
        const char* message = fal_rt_error_message(e);
        const char* body = fal_rt_error_body(e);
        fal_rt_result kind = fal_rt_error_kind(e);
        return Error(kind, message ? message : fal_rt_result_name(kind), fal_rt_error_status(e),
                     fal_rt_error_close_code(e), body ? body : "");
    }

    /// The library's full message (also what()).
    const char* message() const noexcept { return what(); }

    fal_rt_result kind() const noexcept { return kind_; }
    /// Short stable name of the kind, e.g. "server".
    const char* kind_name() const noexcept { return fal_rt_result_name(kind_); }
    /// HTTP status, or 0.
    uint16_t status() const noexcept { return status_; }
    /// WebSocket close code, or 0.
    uint16_t close_code() const noexcept { return close_code_; }
    /// The server's body, or empty.
    const std::string& body() const noexcept { return body_; }

private:
    fal_rt_result kind_;
    uint16_t status_;
    uint16_t close_code_;
    std::string body_;
};

namespace detail {
struct ErrorFree {
    void operator()(fal_rt_error* e) const noexcept { fal_rt_error_free(e); }
};

/// Throw if `rc` is not FAL_RT_OK, taking ownership of the error in `err`
/// (freed exactly once, also when building the exception throws; `err` is
/// reset to NULL).
///
/// `err` is taken by reference on purpose: in
///     check(fal_rt_x(..., &err), err);
/// the order in which the two arguments are evaluated is unspecified, so a
/// by-value `err` may be read before fal_rt_x writes it (GCC does so): the
/// exception then lost the message and the error leaked. A reference is read
/// in the body, after the call; passing a temporary does not compile.
inline void check(fal_rt_result rc, fal_rt_error*& err) {
    std::unique_ptr<fal_rt_error, ErrorFree> owned(err);
    err = nullptr;
    if (rc == FAL_RT_OK) return;
    throw Error::from(owned.get(), rc);
}
void check(fal_rt_result rc, fal_rt_error*&& err) = delete;

/// Throw if `rc` is not FAL_RT_OK, for calls without an error out-param.
inline void check(fal_rt_result rc) {
    if (rc != FAL_RT_OK) throw Error::from(nullptr, rc);
}

template <class T>
T zeroed() {
    T v{};
    v.struct_size = sizeof(T);
    return v;
}

inline const char* c_str_or_null(const std::string& s) { return s.empty() ? nullptr : s.c_str(); }
}  // namespace detail

/// A result, borrowed for the duration of a callback (copy it with to_owned()).
class Message;
class MessageView {
public:
    explicit MessageView(const fal_rt_message* m) noexcept : m_(m) {}
    /// The raw msgpack bytes (zero-copy).
    std::string_view bytes() const noexcept {
        size_t len = 0;
        const uint8_t* p = fal_rt_message_data(m_, &len);
        return p ? std::string_view(reinterpret_cast<const char*>(p), len) : std::string_view();
    }
    /// The result rendered as JSON text.
    std::string json() const {
        char* out = nullptr;
        size_t len = 0;
        fal_rt_error* err = nullptr;
        detail::check(fal_rt_message_to_json(m_, &out, &len, &err), err);
        std::string s(out, len);
        fal_rt_string_free(out);
        return s;
    }
    /// The top-level request_id, if any (zero-copy view into the bytes).
    std::optional<std::string_view> request_id() const noexcept {
        size_t len = 0;
        const char* p = fal_rt_message_request_id(m_, &len);
        if (p == nullptr) return std::nullopt;
        return std::string_view(p, len);
    }
    Message to_owned() const;
    const fal_rt_message* get() const noexcept { return m_; }

private:
    const fal_rt_message* m_;
};

/// An owned result (reference-counted on the Rust side; copying the bytes is never needed).
class Message {
public:
    explicit Message(fal_rt_message* m) noexcept : m_(m) {}
    MessageView view() const noexcept { return MessageView(m_.get()); }
    std::string_view bytes() const noexcept { return view().bytes(); }
    std::string json() const { return view().json(); }
    std::optional<std::string_view> request_id() const noexcept { return view().request_id(); }

private:
    struct Free {
        void operator()(fal_rt_message* m) const noexcept { fal_rt_message_free(m); }
    };
    std::unique_ptr<fal_rt_message, Free> m_;
};

inline Message MessageView::to_owned() const { return Message(fal_rt_message_clone(m_)); }

/// Client options; empty strings mean the defaults (environment, fal.run, rest.fal.ai).
struct ClientOptions {
    std::string key;
    std::string run_host;
    std::string rest_url;
    std::string extra_ca_file;
    bool allow_insecure = false;
    std::chrono::milliseconds open_timeout{0};
    /// Largest incoming frame and message in bytes; 0: the defaults (16 / 64 MiB).
    uint64_t max_frame_size = 0;
    /// Retries of a failed token request; 0: the default (3); negative: none.
    int32_t token_retries = 0;
    /// Keepalive ping interval; 0: the default (20 s); negative: no pings.
    std::chrono::milliseconds ping_interval{0};
    /// Keepalive: how long to wait for the server after a ping; 0: 20 s; negative: forever.
    std::chrono::milliseconds ping_timeout{0};
};

/// The client. Thread-safe; connections outlive it safely.
class Client {
public:
    explicit Client(const ClientOptions& o = {}) {
        auto c = detail::zeroed<fal_rt_client_options>();
        c.key = detail::c_str_or_null(o.key);
        c.run_host = detail::c_str_or_null(o.run_host);
        c.rest_url = detail::c_str_or_null(o.rest_url);
        c.extra_ca_file = detail::c_str_or_null(o.extra_ca_file);
        c.allow_insecure = o.allow_insecure;
        c.open_timeout_ms = static_cast<uint32_t>(o.open_timeout.count());
        c.max_frame_size = o.max_frame_size;
        c.token_retries = o.token_retries;
        c.ping_interval_ms = static_cast<int32_t>(o.ping_interval.count());
        c.ping_timeout_ms = static_cast<int32_t>(o.ping_timeout.count());
        fal_rt_client* raw = nullptr;
        fal_rt_error* err = nullptr;
        detail::check(fal_rt_client_new(&c, &raw, &err), err);
        c_.reset(raw);
    }
    const fal_rt_client* get() const noexcept { return c_.get(); }

private:
    struct Free {
        void operator()(fal_rt_client* c) const noexcept { fal_rt_client_free(c); }
    };
    std::unique_ptr<fal_rt_client, Free> c_;
};

/// Connect options (realtime, sessions and raw sockets); zero/empty means default.
struct ConnectOptions {
    std::string connection_key;
    /// 0: default (128 ms); FAL_RT_THROTTLE_NONE: no throttling.
    int32_t throttle_ms = 0;
    /// 0: not set; else 1..=60.
    int32_t max_buffering = 0;
    std::string path;
    bool header_auth = false;

    fal_rt_connect_options to_c() const {
        auto o = detail::zeroed<fal_rt_connect_options>();
        o.connection_key = detail::c_str_or_null(connection_key);
        o.throttle_ms = throttle_ms;
        o.max_buffering = max_buffering;
        o.path = detail::c_str_or_null(path);
        o.header_auth = header_auth;
        return o;
    }
};

/// Realtime callbacks (any may be empty).
struct Handlers {
    std::function<void(const MessageView&)> on_result;
    std::function<void(const Error&)> on_error;
    std::function<void(fal_rt_state)> on_state;
};

/// Statistics snapshot.
inline fal_rt_stats empty_stats() { return detail::zeroed<fal_rt_stats>(); }

/// A callback-style realtime connection (lazy connect, throttled, latest-wins).
/// send_json/send/close never block and may be called from any thread,
/// including from inside callbacks. The destructor frees the connection:
/// outside callbacks it waits until no callback runs.
class Realtime {
public:
    Realtime(const Client& client, const std::string& app, Handlers handlers, const ConnectOptions& opts = {}) {
        auto o = opts.to_c();
        auto h = detail::zeroed<fal_rt_realtime_handler>();
        // Owned by the library from here on: freed by the finalizer, exactly once.
        h.user_data = new Handlers(std::move(handlers));
        h.on_result = [](void* ud, const fal_rt_message* m) {
            auto* hs = static_cast<Handlers*>(ud);
            if (hs->on_result) guard([&] { hs->on_result(MessageView(m)); });
        };
        h.on_error = [](void* ud, const fal_rt_error* e) {
            auto* hs = static_cast<Handlers*>(ud);
            if (hs->on_error) guard([&] { hs->on_error(Error::from(e)); });
        };
        h.on_state = [](void* ud, fal_rt_state s) {
            auto* hs = static_cast<Handlers*>(ud);
            if (hs->on_state) guard([&] { hs->on_state(s); });
        };
        h.free_user_data = [](void* ud) { delete static_cast<Handlers*>(ud); };
        fal_rt_realtime* raw = nullptr;
        fal_rt_error* err = nullptr;
        detail::check(fal_rt_realtime_connect(client.get(), app.c_str(), &o, &h, &raw, &err), err);
        c_.reset(raw);
    }

    /// Queue msgpack bytes.
    void send(const void* data, size_t len) {
        fal_rt_error* err = nullptr;
        detail::check(fal_rt_realtime_send(c_.get(), static_cast<const uint8_t*>(data), len, &err), err);
    }
    /// Queue a JSON input (converted to msgpack by the library).
    void send_json(const std::string& json) {
        fal_rt_error* err = nullptr;
        detail::check(fal_rt_realtime_send_json(c_.get(), json.c_str(), &err), err);
    }
    /// Close the socket (code 1000); the next send reconnects.
    void close() { detail::check(fal_rt_realtime_close(c_.get())); }
    fal_rt_state state() const {
        fal_rt_state s = FAL_RT_STATE_IDLE;
        detail::check(fal_rt_realtime_state(c_.get(), &s));
        return s;
    }
    fal_rt_stats stats() const {
        fal_rt_stats s = empty_stats();
        detail::check(fal_rt_realtime_stats(c_.get(), &s));
        return s;
    }
    const fal_rt_realtime* get() const noexcept { return c_.get(); }

private:
    template <class F>
    static void guard(F&& f) noexcept {
        try {
            f();
        } catch (...) {
            // Exceptions cannot cross the C boundary.
        }
    }
    struct Free {
        void operator()(fal_rt_realtime* c) const noexcept { fal_rt_realtime_free(c); }
    };
    std::unique_ptr<fal_rt_realtime, Free> c_;
};

/// A pull-style session: connected on construction, blocking send and recv.
/// Never use it from inside a callback (the calls would throw WOULD_BLOCK_IN_CALLBACK).
class Session {
public:
    Session(const Client& client, const std::string& app, const ConnectOptions& opts = {}) {
        auto o = opts.to_c();
        fal_rt_session* raw = nullptr;
        fal_rt_error* err = nullptr;
        detail::check(fal_rt_session_connect(client.get(), app.c_str(), &o, &raw, &err), err);
        s_.reset(raw);
    }
    void send(const void* data, size_t len) {
        fal_rt_error* err = nullptr;
        detail::check(fal_rt_session_send(s_.get(), static_cast<const uint8_t*>(data), len, &err), err);
    }
    void send_json(const std::string& json) {
        fal_rt_error* err = nullptr;
        detail::check(fal_rt_session_send_json(s_.get(), json.c_str(), &err), err);
    }
    /// The next result; std::nullopt on timeout, after interrupt(), or at the
    /// clean end (see ended()). Throws Error for server errors and abnormal closes.
    std::optional<Message> recv(std::chrono::milliseconds timeout = std::chrono::milliseconds(-1)) {
        fal_rt_message* m = nullptr;
        fal_rt_error* err = nullptr;
        fal_rt_result rc = fal_rt_session_recv(s_.get(), static_cast<int32_t>(timeout.count()), &m, &err);
        if (rc == FAL_RT_TIMEOUT_EXPIRED || rc == FAL_RT_INTERRUPTED) return std::nullopt;
        if (rc == FAL_RT_END) {
            ended_ = true;
            return std::nullopt;
        }
        detail::check(rc, err);
        return Message(m);
    }
    /// Whether recv() reached the clean end of the session.
    bool ended() const noexcept { return ended_; }
    /// Wake a recv() waiting on another thread (it returns std::nullopt). Never blocks.
    void interrupt() const noexcept { fal_rt_session_interrupt(s_.get()); }
    void close() {
        fal_rt_error* err = nullptr;
        detail::check(fal_rt_session_close(s_.get(), &err), err);
    }
    fal_rt_stats stats() const {
        fal_rt_stats s = empty_stats();
        detail::check(fal_rt_session_stats(s_.get(), &s));
        return s;
    }

private:
    struct Free {
        void operator()(fal_rt_session* s) const noexcept { fal_rt_session_free(s); }
    };
    std::unique_ptr<fal_rt_session, Free> s_;
    bool ended_ = false;
};

/// Raw WebSocket callbacks (any may be empty).
struct WsHandlers {
    std::function<void(std::string_view data, bool is_text)> on_message;
    std::function<void(const Error&)> on_error;
    std::function<void(uint16_t close_code)> on_close;
};

/// A raw WebSocket (same URL and auth rules). With handlers, frames go to the
/// callbacks; without, read them with recv().
class Ws {
public:
    Ws(const Client& client, const std::string& app, const ConnectOptions& opts = {},
       std::optional<WsHandlers> handlers = std::nullopt) {
        auto o = opts.to_c();
        fal_rt_ws_handler h = detail::zeroed<fal_rt_ws_handler>();
        if (handlers) {
            h.user_data = new WsHandlers(std::move(*handlers));
            h.on_message = [](void* ud, const uint8_t* d, size_t n, bool text) {
                auto* hs = static_cast<WsHandlers*>(ud);
                if (hs->on_message) guard([&] { hs->on_message({reinterpret_cast<const char*>(d), n}, text); });
            };
            h.on_error = [](void* ud, const fal_rt_error* e) {
                auto* hs = static_cast<WsHandlers*>(ud);
                if (hs->on_error) guard([&] { hs->on_error(Error::from(e)); });
            };
            h.on_close = [](void* ud, uint16_t code) {
                auto* hs = static_cast<WsHandlers*>(ud);
                if (hs->on_close) guard([&] { hs->on_close(code); });
            };
            h.free_user_data = [](void* ud) { delete static_cast<WsHandlers*>(ud); };
        }
        fal_rt_ws* raw = nullptr;
        fal_rt_error* err = nullptr;
        detail::check(fal_rt_ws_connect(client.get(), app.c_str(), &o, handlers ? &h : nullptr, &raw, &err), err);
        w_.reset(raw);
    }
    void send_text(const std::string& text) {
        fal_rt_error* err = nullptr;
        detail::check(fal_rt_ws_send_text(w_.get(), text.c_str(), &err), err);
    }
    void send_binary(const void* data, size_t len) {
        fal_rt_error* err = nullptr;
        detail::check(fal_rt_ws_send_binary(w_.get(), static_cast<const uint8_t*>(data), len, &err), err);
    }
    void close() {
        fal_rt_error* err = nullptr;
        detail::check(fal_rt_ws_close(w_.get(), &err), err);
    }
    /// Close with `code` (1000-1003, 1007-1014, 3000-4999) and `reason` (at most 123 bytes).
    void close_with(uint16_t code, const std::string& reason) {
        fal_rt_error* err = nullptr;
        detail::check(fal_rt_ws_close_with(w_.get(), code, reinterpret_cast<const uint8_t*>(reason.data()),
                                           reason.size(), &err),
                      err);
    }
    /// How the socket ended: the server's close code (1006: without one); 0 while open.
    uint16_t close_code() const noexcept {
        uint16_t c = 0;
        fal_rt_ws_close_code(w_.get(), &c);
        return c;
    }
    /// The reason of the server's close frame; std::nullopt while the socket is open.
    std::optional<std::string> close_reason() const {
        char* r = nullptr;
        if (fal_rt_ws_close_reason(w_.get(), &r) != FAL_RT_OK || r == nullptr) return std::nullopt;
        std::string out(r);
        fal_rt_string_free(r);
        return out;
    }
    /// Pull mode: wake a recv() waiting on another thread (it returns std::nullopt).
    void interrupt() const noexcept { fal_rt_ws_interrupt(w_.get()); }
    /// Pull mode: the next frame (data, is_text); std::nullopt on timeout, after interrupt(), or at the end.
    std::optional<std::pair<std::string, bool>> recv(std::chrono::milliseconds timeout = std::chrono::milliseconds(-1)) {
        fal_rt_frame* f = nullptr;
        fal_rt_error* err = nullptr;
        fal_rt_result rc = fal_rt_ws_recv(w_.get(), static_cast<int32_t>(timeout.count()), &f, &err);
        if (rc == FAL_RT_TIMEOUT_EXPIRED || rc == FAL_RT_END || rc == FAL_RT_INTERRUPTED) return std::nullopt;
        detail::check(rc, err);
        size_t len = 0;
        const uint8_t* p = fal_rt_frame_data(f, &len);
        std::pair<std::string, bool> out(std::string(reinterpret_cast<const char*>(p), len), fal_rt_frame_is_text(f));
        fal_rt_frame_free(f);
        return out;
    }

private:
    template <class F>
    static void guard(F&& f) noexcept {
        try {
            f();
        } catch (...) {
        }
    }
    struct Free {
        void operator()(fal_rt_ws* w) const noexcept { fal_rt_ws_free(w); }
    };
    std::unique_ptr<fal_rt_ws, Free> w_;
};

}  // namespace fal::rt

#endif  // FAL_REALTIME_HPP
