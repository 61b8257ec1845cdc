// Tests of the C# binding against the emulator: FAL_RT_EMULATOR=127.0.0.1:PORT,
// FAL_RT_EMULATOR_TIMEOUT (an emulator with --session-timeout 1),
// FAL_RT_STRUCT_SIZES (the C sizes "client,connect,handler").
// Plain Main with asserts; prints `csharp: N passed, M failed` last.
using System;
using System.Collections.Generic;
using System.Threading;
using FalRealtime;

static class Tests
{
    const int Wait = 30000;
    static int passed, failed;

    class AssertFailed : Exception { public AssertFailed(string m) : base(m) { } }

    static void Check(bool cond, string what)
    {
        if (!cond) throw new AssertFailed(what);
    }

    static string[] only = new string[0];

    static void Run(string name, Action test)
    {
        if (only.Length > 0 && Array.IndexOf(only, name) < 0) return;
        try
        {
            test();
            passed++;
            Console.WriteLine("ok - " + name);
        }
        catch (Exception e)
        {
            failed++;
            Console.WriteLine("FAIL - " + name + ": " + e);
        }
    }

    static Client NewClient(string env, string key = "test-key")
    {
        string host = Environment.GetEnvironmentVariable(env);
        if (string.IsNullOrEmpty(host)) throw new AssertFailed(env + " not set");
        return new Client(new ClientOptions {
            Key = key, RunHost = "ws://" + host, RestUrl = "http://" + host,
            AllowInsecure = true, TokenRetries = -1,
        });
    }

    /// <summary>Collects events; waits are bounded.</summary>
    class Recorder
    {
        public readonly List<Result> Results = new List<Result>();
        public readonly List<FalRealtimeException> Errors = new List<FalRealtimeException>();
        public readonly List<ConnectionState> States = new List<ConnectionState>();
        public int AfterDispose;
        public volatile bool Disposed;

        public void Attach(RealtimeConnection c)
        {
            c.ResultReceived += (s, e) => { lock (this) { if (Disposed) AfterDispose++; Results.Add(e.Result); Monitor.PulseAll(this); } };
            c.ErrorReceived += (s, e) => { lock (this) { if (Disposed) AfterDispose++; Errors.Add(e.Error); Monitor.PulseAll(this); } };
            c.StateChanged += (s, e) => { lock (this) { if (Disposed) AfterDispose++; States.Add(e.State); Monitor.PulseAll(this); } };
        }

        public void WaitFor(Func<bool> cond, string what)
        {
            var deadline = DateTime.UtcNow.AddMilliseconds(Wait);
            lock (this)
            {
                while (!cond())
                {
                    var left = deadline - DateTime.UtcNow;
                    if (left <= TimeSpan.Zero) throw new AssertFailed("timed out waiting for " + what);
                    Monitor.Wait(this, left);
                }
            }
        }
    }

    static void StructSizes()
    {
        string want = Environment.GetEnvironmentVariable("FAL_RT_STRUCT_SIZES");
        Check(!string.IsNullOrEmpty(want), "FAL_RT_STRUCT_SIZES set");
        string got = string.Join(",", Interop.StructSizes());
        Check(got == want, "struct sizes " + got + " == C " + want);
        Check(Interop.VersionNumber() == 100, "version number");
    }

    static void Results()
    {
        using (var client = NewClient("FAL_RT_EMULATOR"))
        using (var conn = new RealtimeConnection(client, "demo/echo", new ConnectOptions { ThrottleMs = -1 }))
        {
            var r = new Recorder();
            r.Attach(conn);
            for (int i = 0; i < 3; i++)
            {
                conn.SendJson("{\"n\":" + i + "}");
                int want = i + 1;
                r.WaitFor(() => r.Results.Count >= want, "result " + i);
            }
            lock (r)
            {
                Check(r.Results[2].Json.Contains("\"n\":2"), "json " + r.Results[2].Json);
                Check(r.Results[2].Msgpack.Length > 0, "msgpack bytes");
                Check(r.States.Contains(ConnectionState.Open), "open state seen");
            }
            Check(conn.State == ConnectionState.Open, "state open");
        }
    }

    static void ServerErrorAndCloseCode()
    {
        using (var client = NewClient("FAL_RT_EMULATOR"))
        using (var conn = new RealtimeConnection(client, "demo/control", null))
        {
            var r = new Recorder();
            r.Attach(conn);
            conn.SendJson("{\"do\":\"error_bin\"}");
            r.WaitFor(() => r.Errors.Count >= 1, "server error");
            lock (r) Check(r.Errors[0].Kind == ErrorKind.Server, "kind server: " + r.Errors[0]);
            conn.SendJson("{\"do\":\"close\",\"code\":4001}");
            r.WaitFor(() => r.Errors.Count >= 2, "abnormal close");
            lock (r)
            {
                var e = r.Errors[1];
                Check(e.Kind == ErrorKind.Closed && e.CloseCode == 4001, "closed 4001: " + e);
            }
            conn.SendJson("{\"n\":5}"); // reconnects
            r.WaitFor(() => r.Results.Count >= 1, "result after reconnect");
        }
    }

    static void Unauthorized()
    {
        using (var client = NewClient("FAL_RT_EMULATOR"))
        using (var conn = new RealtimeConnection(client, "demo/control", null))
        {
            var r = new Recorder();
            r.Attach(conn);
            conn.SendJson("{\"do\":\"unauthorized\"}");
            r.WaitFor(() => r.Errors.Count >= 1, "auth error");
            lock (r) Check(r.Errors[0].Kind == ErrorKind.Auth, "kind auth: " + r.Errors[0]);
        }
    }

    static void CloseAndDispose()
    {
        using (var client = NewClient("FAL_RT_EMULATOR"))
        {
            var conn = new RealtimeConnection(client, "demo/echo", new ConnectOptions { ThrottleMs = -1 });
            var r = new Recorder();
            r.Attach(conn);
            conn.SendJson("{\"n\":1}");
            r.WaitFor(() => r.Results.Count >= 1, "result");
            conn.Close();
            r.WaitFor(() => r.States.Contains(ConnectionState.Closed), "closed state");
            for (int i = 0; i < 20; i++) conn.SendJson("{\"n\":" + i + "}");
            conn.Dispose();
            r.Disposed = true;
            Check(conn.Released.WaitOne(0), "released when Dispose returns");
            Thread.Sleep(300);
            lock (r) Check(r.AfterDispose == 0, "no events after Dispose: " + r.AfterDispose);
            bool threw = false;
            try { conn.SendJson("{}"); } catch (ObjectDisposedException) { threw = true; }
            Check(threw, "send after Dispose throws ObjectDisposedException");
            conn.Dispose(); // idempotent
        }
    }

    static void DisposeInsideCallback()
    {
        using (var client = NewClient("FAL_RT_EMULATOR"))
        {
            var conn = new RealtimeConnection(client, "demo/echo", null);
            var done = new ManualResetEvent(false);
            Exception sendAfter = null;
            conn.ResultReceived += (s, e) =>
            {
                var c = (RealtimeConnection)s;
                c.Dispose(); // deferred by the library: must not deadlock
                try { c.SendJson("{}"); } catch (Exception ex) { sendAfter = ex; }
                done.Set();
            };
            conn.SendJson("{\"n\":1}");
            Check(done.WaitOne(Wait), "callback ran");
            Check(sendAfter is ObjectDisposedException, "send after dispose in callback: " + sendAfter);
            Check(conn.Released.WaitOne(Wait), "finalizer ran");
        }
    }

    static void ConcurrentSendAndDispose()
    {
        using (var client = NewClient("FAL_RT_EMULATOR"))
        {
            var conn = new RealtimeConnection(client, "demo/echo", new ConnectOptions { ThrottleMs = -1 });
            var r = new Recorder();
            r.Attach(conn);
            conn.ResultReceived += (s, e) => { try { ((RealtimeConnection)s).SendJson("{\"n\":-1}"); } catch (ObjectDisposedException) { } };
            int unexpected = 0;
            var threads = new List<Thread>();
            for (int t = 0; t < 4; t++)
            {
                var th = new Thread(() =>
                {
                    for (int i = 0; i < 50; i++)
                    {
                        try { conn.SendJson("{\"n\":" + i + "}"); var st = conn.State; }
                        catch (ObjectDisposedException) { }
                        catch (Exception) { Interlocked.Increment(ref unexpected); }
                    }
                });
                th.Start();
                threads.Add(th);
            }
            r.WaitFor(() => r.Results.Count >= 5, "results");
            conn.Dispose(); // races with the senders: SafeHandle keeps each call safe
            r.Disposed = true;
            foreach (var th in threads) Check(th.Join(Wait), "sender finished");
            Check(Volatile.Read(ref unexpected) == 0, "no unexpected exceptions");
            Check(conn.Released.WaitOne(Wait), "released");
            Thread.Sleep(200);
            lock (r) Check(r.AfterDispose == 0, "no events after Dispose: " + r.AfterDispose);
        }
    }

    static void ReconnectAfterIdleTimeout()
    {
        using (var client = NewClient("FAL_RT_EMULATOR_TIMEOUT"))
        using (var conn = new RealtimeConnection(client, "demo/echo", null))
        {
            var r = new Recorder();
            r.Attach(conn);
            conn.SendJson("{\"n\":1}");
            r.WaitFor(() => r.Results.Count >= 1, "first result");
            r.WaitFor(() => r.States.Contains(ConnectionState.Closed), "server idle timeout");
            conn.SendJson("{\"n\":2}");
            r.WaitFor(() => r.Results.Count >= 2, "result after the idle timeout");
            lock (r) Check(r.Results[1].Json.Contains("\"n\":2"), "second result");
        }
    }

    static void SessionRoundTrip()
    {
        using (var client = NewClient("FAL_RT_EMULATOR"))
        using (var s = new Session(client, "demo/echo", null))
        {
            for (int i = 0; i < 3; i++)
            {
                s.SendJson("{\"n\":" + i + "}");
                var res = s.Receive(Wait);
                Check(res != null && res.Json.Contains("\"n\":" + i), "session result " + i);
            }
            var start = DateTime.UtcNow;
            Check(s.Receive(100) == null, "timeout returns null");
            Check((DateTime.UtcNow - start).TotalMilliseconds < 5000, "timeout is bounded");
            s.Close();
            bool ended = false;
            try { while (s.Receive(Wait) != null) { } } catch (SessionEndedException) { ended = true; }
            Check(ended, "ended after Close");
        }
    }

    static void SessionErrors()
    {
        using (var client = NewClient("FAL_RT_EMULATOR"))
        using (var s = new Session(client, "demo/control", null))
        {
            s.SendJson("{\"do\":\"error_bin\"}");
            FalRealtimeException e = null;
            try { s.Receive(Wait); } catch (FalRealtimeException ex) { e = ex; }
            Check(e != null && e.Kind == ErrorKind.Server && !string.IsNullOrEmpty(e.Body), "server error with body: " + e);
            s.SendJson("{\"do\":\"close\",\"code\":4001}");
            e = null;
            try { s.Receive(Wait); } catch (FalRealtimeException ex) { e = ex; }
            Check(e != null && e.Kind == ErrorKind.Closed && e.CloseCode == 4001, "closed 4001: " + e);
            e = null;
            try { s.SendJson("{}"); } catch (FalRealtimeException ex) { e = ex; }
            Check(e != null && e.Kind == ErrorKind.Closed, "send after the end: " + e);
        }
        using (var bad = NewClient("FAL_RT_EMULATOR", "wrong-key"))
        {
            FalRealtimeException e = null;
            try { new Session(bad, "demo/echo", null).Dispose(); } catch (FalRealtimeException ex) { e = ex; }
            Check(e != null && e.Kind == ErrorKind.Auth && e.Status != 0, "auth error with status: " + e);
        }
    }

    static void SessionIdleTimeoutEnds()
    {
        using (var client = NewClient("FAL_RT_EMULATOR_TIMEOUT"))
        using (var s = new Session(client, "demo/echo", null))
        {
            s.SendJson("{\"n\":1}");
            Check(s.Receive(Wait) != null, "result");
            bool ended = false;
            try { s.Receive(Wait); } catch (SessionEndedException) { ended = true; }
            Check(ended, "SessionEndedException after the server's idle timeout");
        }
    }

    static void Logger()
    {
        int opening = 0;
        Log.SetLogger(LogLevel.Debug, (level, target, message) =>
        {
            if (level == LogLevel.Debug && target.StartsWith("fal_realtime") && message.StartsWith("opening "))
                Interlocked.Increment(ref opening);
        });
        using (var client = NewClient("FAL_RT_EMULATOR"))
        {
            new Session(client, "demo/echo", null).Dispose();
            Log.SetLogger(LogLevel.Debug, null);
            int n = Volatile.Read(ref opening);
            Check(n > 0, "an opening record");
            new Session(client, "demo/echo", null).Dispose();
            Check(Volatile.Read(ref opening) == n, "no records after logging off");
        }
    }

    static void SessionReceiveAsyncCancel()
    {
        using (var client = NewClient("FAL_RT_EMULATOR"))
        using (var s = new Session(client, "demo/echo", null))
        {
            // ct cancels a wait that would last forever (no polling), and the session goes on.
            using (var cts = new CancellationTokenSource())
            {
                var t = s.ReceiveAsync(cts.Token);
                Thread.Sleep(100);
                cts.Cancel();
                bool cancelled = false;
                try { t.Wait(Wait); }
                catch (AggregateException e) { cancelled = e.InnerException is OperationCanceledException; }
                Check(cancelled, "ReceiveAsync cancelled: " + t.Status);
            }
            s.SendJson("{\"n\":3}");
            var r = s.ReceiveAsync(CancellationToken.None);
            Check(r.Wait(Wait) && r.Result.Json.Contains("\"n\":3"), "result after the cancelled wait");
            // Dispose wakes a Receive blocked on another thread.
            Exception woke = null;
            var th = new Thread(() => { try { s.Receive(-1); } catch (Exception e) { woke = e; } });
            th.Start();
            Thread.Sleep(100);
            s.Dispose();
            Check(th.Join(Wait), "blocked Receive woken by Dispose");
            Check(woke is ObjectDisposedException, "ObjectDisposedException: " + woke);
        }
    }

    static void ConnectCancelled()
    {
        string host = Environment.GetEnvironmentVariable("FAL_RT_EMULATOR");
        using (var client = new Client(new ClientOptions {
            Key = "test-key", RunHost = "ws://" + host, RestUrl = "http://" + host,
            AllowInsecure = true, TokenRetries = -1, OpenTimeoutMs = 60000,
        }))
        {
            // demo/stall never answers the handshake: the token cancels the connect.
            using (var cts = new CancellationTokenSource(150))
            {
                bool cancelled = false;
                try { new Session(client, "demo/stall", null, cts.Token).Dispose(); }
                catch (OperationCanceledException) { cancelled = true; }
                Check(cancelled, "session connect cancelled");
            }
            using (var cts = new CancellationTokenSource(150))
            {
                bool cancelled = false;
                try { new WebSocket(client, "demo/stall", new ConnectOptions { Path = "/realtime" }, cts.Token).Dispose(); }
                catch (OperationCanceledException) { cancelled = true; }
                Check(cancelled, "ws connect cancelled");
            }
        }
    }

    static void RawWebSocket()
    {
        using (var client = NewClient("FAL_RT_EMULATOR"))
        {
            using (var ws = new WebSocket(client, "demo/echo", new ConnectOptions { Path = "/raw" }))
            {
                ws.SendText("hello");
                var f = ws.Receive(Wait);
                Check(f != null && f.IsText && f.Text == "hello", "text echo");
                ws.SendBinary(new byte[] { 0x93, 1, 2, 3 }); // msgpack [1, 2, 3]
                f = ws.Receive(Wait);
                Check(f != null && !f.IsText && f.Data.Length == 4, "binary echo");
                using (var cts = new CancellationTokenSource(100))
                {
                    var t = ws.ReceiveAsync(cts.Token);
                    bool cancelled = false;
                    try { t.Wait(Wait); }
                    catch (AggregateException e) { cancelled = e.InnerException is OperationCanceledException; }
                    Check(cancelled, "ws ReceiveAsync cancelled");
                }
                Check(ws.CloseCode == 0 && ws.CloseReason == null, "not ended yet");
                FalRealtimeException e1 = null;
                try { ws.CloseWith(1005, ""); } catch (FalRealtimeException ex) { e1 = ex; }
                Check(e1 != null && e1.Kind == ErrorKind.InvalidArgument, "close 1005 refused: " + e1);
                ws.CloseWith(4000, "bye");
                bool ended = false;
                try { while (ws.Receive(Wait) != null) { } }
                catch (SessionEndedException) { ended = true; }
                catch (FalRealtimeException) { ended = true; }
                Check(ended, "ended after CloseWith");
                Check(ws.CloseCode == 4000 && ws.CloseReason == "bye", "close " + ws.CloseCode + " " + ws.CloseReason);
            }
            using (var ctl = new WebSocket(client, "demo/control", new ConnectOptions { Path = "/realtime" }))
            {
                // msgpack {"do":"close","code":4002}
                ctl.SendBinary(new byte[] { 0x82, 0xa2, 0x64, 0x6f, 0xa5, 0x63, 0x6c, 0x6f, 0x73, 0x65, 0xa4, 0x63, 0x6f, 0x64, 0x65, 0xcd, 0x0f, 0xa2 });
                FalRealtimeException e = null;
                try { while (ctl.Receive(Wait) != null) { } } catch (FalRealtimeException ex) { e = ex; }
                Check(e != null && e.Kind == ErrorKind.Closed && e.CloseCode == 4002 && ctl.CloseCode == 4002, "closed 4002: " + e);
            }
        }
    }

    static void TokenProvider()
    {
        using (var client = NewClient("FAL_RT_EMULATOR"))
        {
            int calls = 0;
            string app = null;
            var o = new ConnectOptions { TokenProvider = a => { Interlocked.Increment(ref calls); app = a; return "not-a-real-token"; } };
            // The emulator opens with any token and answers the first input Unauthorized.
            using (var s = new Session(client, "demo/echo", o))
            {
                Check(Volatile.Read(ref calls) == 1 && app != null && app.Contains("echo"), "provider called for " + app);
                s.SendJson("{\"n\":1}");
                FalRealtimeException e = null;
                try { s.Receive(Wait); } catch (FalRealtimeException ex) { e = ex; }
                Check(e != null && e.Kind == ErrorKind.Auth, "auth: " + e);
            }
            var failing = new ConnectOptions { Path = "/raw", TokenProvider = a => { throw new InvalidOperationException("no"); } };
            FalRealtimeException f = null;
            try { new WebSocket(client, "demo/echo", failing).Dispose(); } catch (FalRealtimeException ex) { f = ex; }
            Check(f != null && f.Kind == ErrorKind.TokenProvider, "failing provider: " + f);
            f = null;
            try { new Session(client, "demo/echo", new ConnectOptions { TokenProvider = a => null }).Dispose(); }
            catch (FalRealtimeException ex) { f = ex; }
            Check(f != null && f.Kind == ErrorKind.TokenProvider, "null token: " + f);
        }
    }

    /// <summary>Last: everything is disposed, so every GCHandle was released and the library's threads ended.</summary>
    static void NothingLeft()
    {
        GC.Collect();
        GC.WaitForPendingFinalizers();
        Check(Interop.LiveGCHandles == 0, "live GCHandles: " + Interop.LiveGCHandles);
        Check(Interop.ThreadCount() == 0, "library threads still running: " + Interop.ThreadCount());
        var c = Interop.ThreadHookCounts();
        Check(c[0] > 0 && c[0] == c[1], "thread hooks: " + c[0] + " started, " + c[1] + " stopped");
    }

    static int Main(string[] args)
    {
        only = args;
        Run("struct_sizes", StructSizes);
        Run("results", Results);
        Run("server_error_and_close_code", ServerErrorAndCloseCode);
        Run("unauthorized", Unauthorized);
        Run("close_and_dispose", CloseAndDispose);
        Run("dispose_inside_callback", DisposeInsideCallback);
        Run("concurrent_send_and_dispose", ConcurrentSendAndDispose);
        Run("reconnect_after_idle_timeout", ReconnectAfterIdleTimeout);
        Run("session_round_trip", SessionRoundTrip);
        Run("session_errors", SessionErrors);
        Run("session_idle_timeout_ends", SessionIdleTimeoutEnds);
        Run("logger", Logger);
        Run("session_receive_async_cancel", SessionReceiveAsyncCancel);
        Run("connect_cancelled", ConnectCancelled);
        Run("raw_websocket", RawWebSocket);
        Run("token_provider", TokenProvider);
        Run("nothing_left", NothingLeft);
        Console.WriteLine("csharp: " + passed + " passed, " + failed + " failed");
        // Main returns and Mono exits normally: the library's threads ended when
        // the last object was disposed (test-csharp.sh bounds the exit with timeout).
        return failed == 0 ? 0 : 1;
    }
}
