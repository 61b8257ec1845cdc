// The realtime demo in C++ with the RAII wrapper (fal_realtime.hpp): a
// callback-style connection, then a pull-style session. Against the emulator:
//
//     fal-realtime serve --port 8765 &
//     ./realtime_demo_cpp 127.0.0.1:8765 demo/echo 5
#include <fal_realtime.hpp>

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <string>

int main(int argc, char** argv) {
    const std::string host = argc > 1 ? argv[1] : "-";
    const std::string app = argc > 2 ? argv[2] : "demo/echo";
    const int frames = argc > 3 ? std::stoi(argv[3]) : 5;

    try {
        fal::rt::ClientOptions copts;
        if (host != "-") {  // the local emulator
            copts.key = "test-key";
            copts.run_host = "ws://" + host;
            copts.rest_url = "http://" + host;
            copts.allow_insecure = true;
        }
        fal::rt::Client client(copts);

        std::mutex mu;
        std::condition_variable cv;
        int results = 0, errors = 0;
        fal::rt::Handlers handlers;
        handlers.on_result = [&](const fal::rt::MessageView& m) {
            // Runs on a library thread; the view is borrowed for the call.
            std::printf("result %s: %s\n", std::string(m.request_id().value_or("")).c_str(), m.json().c_str());
            std::lock_guard<std::mutex> g(mu);
            results++;
            cv.notify_all();
        };
        handlers.on_error = [&](const fal::rt::Error& e) {
            std::fprintf(stderr, "error (%s): %s\n", e.kind_name(), e.what());
            std::lock_guard<std::mutex> g(mu);
            errors++;
            cv.notify_all();
        };
        fal::rt::ConnectOptions opts;
        opts.throttle_ms = FAL_RT_THROTTLE_NONE;
        {
            fal::rt::Realtime conn(client, app, handlers, opts);
            for (int i = 0; i < frames; i++) {
                conn.send_json("{\"prompt\":\"a cat\",\"frame\":" + std::to_string(i) +
                               ",\"request_id\":\"frame-" + std::to_string(i) + "\"}");
                std::unique_lock<std::mutex> lk(mu);
                if (!cv.wait_for(lk, std::chrono::seconds(30), [&] { return results > i || errors > 0; })) break;
                if (errors > 0) break;
            }
            conn.close();
        }  // ~Realtime: freed; no callback runs after this point

        // The pull style: explicit connect, send, recv with a timeout.
        fal::rt::Session session(client, app);
        session.send_json(R"({"prompt":"a dog","request_id":"pull-0"})");
        auto msg = session.recv(std::chrono::seconds(30));
        if (msg) std::printf("pulled %s: %s\n", std::string(msg->request_id().value_or("")).c_str(), msg->json().c_str());
        session.close();

        std::printf("done: %d results, %d errors, pulled %d\n", results, errors, msg ? 1 : 0);
        return results == frames && errors == 0 && msg ? 0 : 1;
    } catch (const fal::rt::Error& e) {
        std::fprintf(stderr, "fal-realtime error (%s): %s\n", e.kind_name(), e.what());
        return 1;
    }
}
