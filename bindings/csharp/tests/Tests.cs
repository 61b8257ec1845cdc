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

    [System.Runtime.InteropServices.DllImport("libc")]
    static extern void exit(int code);

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
        Console.WriteLine("csharp: " + passed + " passed, " + failed + " failed");
        int code = failed == 0 ? 0 : 1;
        // Mono 6.8 does not finish its shutdown once library threads ran
        // callbacks (see README.md, "Exiting under Mono"): leave with exit(3).
        Console.Out.Flush();
        Console.Error.Flush();
        exit(code);
        return code;
    }
}
