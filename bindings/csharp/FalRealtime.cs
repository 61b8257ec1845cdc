// C# binding of fal-realtime's C ABI (include/fal_realtime.h) over P/Invoke:
// Mono, .NET and Unity (Mono and IL2CPP). One file, no dependencies.
//
// Threads: events (ResultReceived, ErrorReceived, StateChanged) and the log
// callback run on the library's threads, never concurrently for one
// connection. See README.md for marshalling them to Unity's main thread.
using System;
using System.Collections.Generic;
using System.Runtime.InteropServices;
using System.Text;
using System.Threading;
using System.Threading.Tasks;

namespace FalRealtime
{
    /// <summary>IL2CPP needs this on static methods called from native code; it matches by name.</summary>
    [AttributeUsage(AttributeTargets.Method)]
    public sealed class MonoPInvokeCallbackAttribute : Attribute
    {
        public MonoPInvokeCallbackAttribute(Type delegateType) { DelegateType = delegateType; }
        public Type DelegateType { get; private set; }
    }

    /// <summary>The library's result codes (fal_rt_result), as error kinds.</summary>
    public enum ErrorKind
    {
        InvalidArgument = 1, Credentials = 2, Auth = 3, Http = 4, TokenProvider = 5, Connect = 6,
        Tls = 7, Timeout = 8, Server = 9, Closed = 10, Decode = 11, Encode = 12, NotConnected = 13,
        Internal = 14, NullArgument = 100, InvalidUtf8 = 101, WouldBlockInCallback = 102,
        WouldBlockInRuntime = 103, BadStructSize = 106, WrongMode = 107, AlreadySet = 108, Panic = 199,
    }

    public enum ConnectionState { Idle = 0, Authenticating = 1, Connecting = 2, Open = 3, Closed = 4 }

    public enum LogLevel { Error = 1, Warn = 2, Info = 3, Debug = 4, Trace = 5 }

    /// <summary>An error of the library: kind, message, HTTP status, close code, server body.</summary>
    public class FalRealtimeException : Exception
    {
        public ErrorKind Kind { get; private set; }
        public int Status { get; private set; }
        public int CloseCode { get; private set; }
        public string Body { get; private set; }

        public FalRealtimeException(ErrorKind kind, string message, int status, int closeCode, string body)
            : base(message)
        {
            Kind = kind; Status = status; CloseCode = closeCode; Body = body;
        }

        public override string ToString()
        {
            return "FalRealtimeException(" + Kind + ", close " + CloseCode + ", status " + Status + "): " + Message;
        }

        internal static FalRealtimeException From(IntPtr err, int code)
        {
            if (err == IntPtr.Zero)
                return new FalRealtimeException((ErrorKind)code, Native.Str(Native.fal_rt_result_name(code)), 0, 0, null);
            return new FalRealtimeException(
                (ErrorKind)Native.fal_rt_error_kind(err),
                Native.Str(Native.fal_rt_error_message(err)),
                Native.fal_rt_error_status(err),
                Native.fal_rt_error_close_code(err),
                Native.Str(Native.fal_rt_error_body(err)));
        }

        /// <summary>Throw for a failed call, freeing the owned error.</summary>
        internal static void Check(int code, IntPtr err)
        {
            if (code == 0) return;
            var e = From(err, code);
            Native.fal_rt_error_free(err);
            throw e;
        }
    }

    /// <summary>Session.Receive after the session ended cleanly (normal close, server idle timeout).</summary>
    public class SessionEndedException : Exception
    {
        public SessionEndedException() : base("the session ended") { }
    }

    /// <summary>A result: the server's msgpack bytes, and the same as JSON text.</summary>
    public sealed class Result
    {
        public byte[] Msgpack { get; private set; }
        public string Json { get; private set; }
        public string RequestId { get; private set; }

        internal static Result From(IntPtr msg)
        {
            var r = new Result();
            UIntPtr len;
            IntPtr data = Native.fal_rt_message_data(msg, out len);
            r.Msgpack = new byte[(int)len];
            if (data != IntPtr.Zero && r.Msgpack.Length > 0) Marshal.Copy(data, r.Msgpack, 0, r.Msgpack.Length);
            UIntPtr idLen;
            IntPtr id = Native.fal_rt_message_request_id(msg, out idLen);
            if (id != IntPtr.Zero) r.RequestId = Native.Str(id, (int)idLen);
            IntPtr json;
            UIntPtr jsonLen;
            if (Native.fal_rt_message_to_json(msg, out json, out jsonLen, IntPtr.Zero) == 0)
            {
                r.Json = Native.Str(json, (int)jsonLen);
                Native.fal_rt_string_free(json);
            }
            return r;
        }
    }

    public sealed class ResultEventArgs : EventArgs
    {
        public ResultEventArgs(Result r) { Result = r; }
        public Result Result { get; private set; }
    }

    public sealed class ErrorEventArgs : EventArgs
    {
        public ErrorEventArgs(FalRealtimeException e) { Error = e; }
        public FalRealtimeException Error { get; private set; }
    }

    public sealed class StateEventArgs : EventArgs
    {
        public StateEventArgs(ConnectionState s) { State = s; }
        public ConnectionState State { get; private set; }
    }

    /// <summary>Options of a Client (null / 0: defaults).</summary>
    public sealed class ClientOptions
    {
        public string Key, RunHost, RestUrl, ExtraCaFile;
        public bool AllowInsecure;
        public uint OpenTimeoutMs;
        public ulong MaxFrameSize;
        public int TokenRetries, PingIntervalMs, PingTimeoutMs;
    }

    /// <summary>Options of Connect / Session.Open (null / 0: defaults).</summary>
    public sealed class ConnectOptions
    {
        public string ConnectionKey, Path;
        /// <summary>ms between sends; 0 = 128 ms; -1 = no throttling.</summary>
        public int ThrottleMs;
        public int MaxBuffering;
        public bool HeaderAuth;
        public uint TokenExpirationMs;
        /// <summary>
        /// Replaces the token endpoint: returns a token for the app (the normalised
        /// "{id}{path}"); null or an exception fails the connect or refresh
        /// (ErrorKind.TokenProvider). Runs on a library thread; it may block.
        /// </summary>
        public Func<string, string> TokenProvider;
    }

    internal sealed class ClientHandle : SafeHandle
    {
        public ClientHandle() : base(IntPtr.Zero, true) { }
        public override bool IsInvalid { get { return handle == IntPtr.Zero; } }
        protected override bool ReleaseHandle() { Native.fal_rt_client_free(handle); return true; }
    }

    internal sealed class RealtimeHandle : SafeHandle
    {
        public RealtimeHandle() : base(IntPtr.Zero, true) { }
        public override bool IsInvalid { get { return handle == IntPtr.Zero; } }
        // Outside callbacks this blocks until no callback runs; inside one it is deferred.
        protected override bool ReleaseHandle() { Native.fal_rt_realtime_free(handle); return true; }
    }

    internal sealed class SessionHandle : SafeHandle
    {
        public SessionHandle() : base(IntPtr.Zero, true) { }
        public override bool IsInvalid { get { return handle == IntPtr.Zero; } }
        protected override bool ReleaseHandle() { Native.fal_rt_session_free(handle); return true; }
    }

    internal sealed class WsHandle : SafeHandle
    {
        public WsHandle() : base(IntPtr.Zero, true) { }
        public override bool IsInvalid { get { return handle == IntPtr.Zero; } }
        protected override bool ReleaseHandle() { Native.fal_rt_ws_free(handle); return true; }
    }

    internal sealed class CancelHandle : SafeHandle
    {
        public CancelHandle() : base(IntPtr.Zero, true) { }
        public override bool IsInvalid { get { return handle == IntPtr.Zero; } }
        protected override bool ReleaseHandle() { Native.fal_rt_cancel_token_free(handle); return true; }
    }

    /// <summary>Runs a blocking connect that a CancellationToken interrupts (fal_rt_cancel_token).</summary>
    internal static class Cancellable
    {
        /// <summary>connect(cancelTokenPtr) returns a result code; OperationCanceledException when ct ended it.</summary>
        public static int Connect(CancellationToken ct, Func<IntPtr, int> connect)
        {
            ct.ThrowIfCancellationRequested();
            if (!ct.CanBeCanceled) return connect(IntPtr.Zero);
            CancelHandle tok;
            if (Native.fal_rt_cancel_token_new(out tok) != 0) return connect(IntPtr.Zero);
            using (tok)
            {
                int rc;
                using (ct.Register(() => { try { Native.fal_rt_cancel_token_cancel(tok); } catch (ObjectDisposedException) { } }))
                {
                    rc = connect(tok.DangerousGetHandle());
                }
                if (rc == Native.Interrupted) throw new OperationCanceledException(ct);
                return rc;
            }
        }
    }

    /// <summary>Copies of strings in native memory for the duration of a call.</summary>
    internal sealed class NativeStrings : IDisposable
    {
        readonly List<IntPtr> ptrs = new List<IntPtr>();

        public IntPtr Add(string s)
        {
            if (s == null) return IntPtr.Zero;
            byte[] b = Encoding.UTF8.GetBytes(s);
            IntPtr p = Marshal.AllocHGlobal(b.Length + 1);
            Marshal.Copy(b, 0, p, b.Length);
            Marshal.WriteByte(p, b.Length, 0);
            ptrs.Add(p);
            return p;
        }

        public void Dispose()
        {
            foreach (var p in ptrs) Marshal.FreeHGlobal(p);
            ptrs.Clear();
        }
    }

    /// <summary>A client: configuration and TLS roots. Thread-safe.</summary>
    public sealed class Client : IDisposable
    {
        internal readonly ClientHandle Handle;

        public Client(ClientOptions o)
        {
            Threads.Install();
            var co = new Native.ClientOptions();
            co.struct_size = (uint)Marshal.SizeOf(typeof(Native.ClientOptions));
            using (var s = new NativeStrings())
            {
                if (o != null)
                {
                    co.key = s.Add(o.Key);
                    co.run_host = s.Add(o.RunHost);
                    co.rest_url = s.Add(o.RestUrl);
                    co.extra_ca_file = s.Add(o.ExtraCaFile);
                    co.allow_insecure = (byte)(o.AllowInsecure ? 1 : 0);
                    co.open_timeout_ms = o.OpenTimeoutMs;
                    co.max_frame_size = o.MaxFrameSize;
                    co.token_retries = o.TokenRetries;
                    co.ping_interval_ms = o.PingIntervalMs;
                    co.ping_timeout_ms = o.PingTimeoutMs;
                }
                IntPtr err;
                ClientHandle h;
                int rc = Native.fal_rt_client_new(ref co, out h, out err);
                FalRealtimeException.Check(rc, err);
                Handle = h;
            }
        }

        public void Dispose() { Handle.Dispose(); }

        internal static Native.ConnectOptions Options(ConnectOptions o, NativeStrings s)
        {
            var co = new Native.ConnectOptions();
            co.struct_size = (uint)Marshal.SizeOf(typeof(Native.ConnectOptions));
            if (o == null) return co;
            co.connection_key = s.Add(o.ConnectionKey);
            co.path = s.Add(o.Path);
            co.throttle_ms = o.ThrottleMs;
            co.max_buffering = o.MaxBuffering;
            co.header_auth = (byte)(o.HeaderAuth ? 1 : 0);
            co.token_expiration_ms = o.TokenExpirationMs;
            if (o.TokenProvider != null)
            {
                // Owned by the library from the connect call on: OnFreeCallbacks releases it.
                GCHandle gch = GCHandle.Alloc(o.TokenProvider);
                Interlocked.Increment(ref Interop.liveHandles);
                co.token_provider = TokenCallbacks.OnTokenPtr;
                co.callbacks_user_data = GCHandle.ToIntPtr(gch);
                co.free_callbacks_user_data = TokenCallbacks.OnFreePtr;
            }
            return co;
        }

        static class TokenCallbacks
        {
            static readonly Native.TokenFn onToken = OnToken;
            static readonly Native.FreeFn onFree = OnFree;
            public static readonly IntPtr OnTokenPtr = Marshal.GetFunctionPointerForDelegate(onToken);
            public static readonly IntPtr OnFreePtr = Marshal.GetFunctionPointerForDelegate(onFree);

            [MonoPInvokeCallback(typeof(Native.TokenFn))]
            static int OnToken(IntPtr ud, IntPtr app, IntPtr buf)
            {
                Threads.Attached();
                try
                {
                    var f = (Func<string, string>)GCHandle.FromIntPtr(ud).Target;
                    string tok = f(Native.Str(app));
                    if (string.IsNullOrEmpty(tok)) return 1;
                    byte[] b = Encoding.UTF8.GetBytes(tok);
                    return Native.fal_rt_buffer_append(buf, b, (UIntPtr)b.Length) == 0 ? 0 : 1;
                }
                catch (Exception) { return 1; }
            }

            [MonoPInvokeCallback(typeof(Native.FreeFn))]
            static void OnFree(IntPtr ud)
            {
                GCHandle.FromIntPtr(ud).Free();
                Interlocked.Decrement(ref Interop.liveHandles);
            }
        }
    }

    /// <summary>
    /// A callback-style realtime connection: lazy connect on the first send,
    /// throttled, reconnects on the next send after any close. Events run on
    /// library threads. Dispose (also allowed inside an event handler) frees
    /// it; outside handlers, no event is raised after Dispose returns.
    /// </summary>
    public sealed class RealtimeConnection : IDisposable
    {
        /// <summary>What the native user_data (a GCHandle) points to; it does not keep the connection alive.</summary>
        sealed class Dispatcher
        {
            public WeakReference Owner;
            public EventHandler<ResultEventArgs> OnResult;
            public EventHandler<ErrorEventArgs> OnError;
            public EventHandler<StateEventArgs> OnState;
            public readonly ManualResetEvent Released = new ManualResetEvent(false);
        }

        readonly RealtimeHandle handle;
        readonly Dispatcher dispatcher = new Dispatcher();

        public event EventHandler<ResultEventArgs> ResultReceived
        {
            add { lock (dispatcher) dispatcher.OnResult += value; }
            remove { lock (dispatcher) dispatcher.OnResult -= value; }
        }

        public event EventHandler<ErrorEventArgs> ErrorReceived
        {
            add { lock (dispatcher) dispatcher.OnError += value; }
            remove { lock (dispatcher) dispatcher.OnError -= value; }
        }

        public event EventHandler<StateEventArgs> StateChanged
        {
            add { lock (dispatcher) dispatcher.OnState += value; }
            remove { lock (dispatcher) dispatcher.OnState -= value; }
        }

        /// <summary>Set when the library released the connection's user data (no more events).</summary>
        public WaitHandle Released { get { return dispatcher.Released; } }

        /// <summary>Connect (returns at once; the socket opens on the first send). Subscribe to events before sending.</summary>
        public RealtimeConnection(Client client, string app, ConnectOptions options)
        {
            dispatcher.Owner = new WeakReference(this);
            GCHandle gch = GCHandle.Alloc(dispatcher);
            Interlocked.Increment(ref Interop.liveHandles);
            var h = new Native.RealtimeHandler();
            h.struct_size = (uint)Marshal.SizeOf(typeof(Native.RealtimeHandler));
            h.user_data = GCHandle.ToIntPtr(gch);
            h.on_result = Callbacks.OnResultPtr;
            h.on_error = Callbacks.OnErrorPtr;
            h.on_state = Callbacks.OnStatePtr;
            h.free_user_data = Callbacks.OnFreePtr;
            using (var s = new NativeStrings())
            {
                var co = Client.Options(options, s);
                IntPtr app8 = s.Add(app);
                IntPtr err;
                RealtimeHandle rh;
                // From here the library owns gch: OnFree releases it, also on failure.
                int rc = Native.fal_rt_realtime_connect(client.Handle, app8, ref co, ref h, out rh, out err);
                FalRealtimeException.Check(rc, err);
                handle = rh;
            }
        }

        /// <summary>Queue an input given as JSON text. Never blocks.</summary>
        public void SendJson(string json)
        {
            using (var s = new NativeStrings())
            {
                IntPtr err;
                FalRealtimeException.Check(Native.fal_rt_realtime_send_json(handle, s.Add(json), out err), err);
            }
        }

        /// <summary>Queue an input given as msgpack bytes (exactly one value).</summary>
        public void Send(byte[] msgpack)
        {
            IntPtr err;
            FalRealtimeException.Check(
                Native.fal_rt_realtime_send(handle, msgpack, (UIntPtr)msgpack.Length, out err), err);
        }

        /// <summary>Close the socket (code 1000); the next send reconnects.</summary>
        public void Close() { Native.fal_rt_realtime_close(handle); }

        public ConnectionState State
        {
            get
            {
                int s;
                int rc = Native.fal_rt_realtime_state(handle, out s);
                return rc == 0 ? (ConnectionState)s : ConnectionState.Closed;
            }
        }

        /// <summary>
        /// Free the connection. Outside event handlers, waits until the library
        /// released it: no event is raised after this returns (also when another
        /// thread was inside a call on it, which SafeHandle lets finish first).
        /// Inside a handler it does not wait (the library defers the free).
        /// </summary>
        public void Dispose()
        {
            handle.Dispose();
            if (!Threads.InCallback) dispatcher.Released.WaitOne();
        }

        static class Callbacks
        {
            // Delegates live as long as the process: native code keeps their pointers.
            static readonly Native.ResultFn onResult = OnResult;
            static readonly Native.ErrorFn onError = OnError;
            static readonly Native.StateFn onState = OnState;
            static readonly Native.FreeFn onFree = OnFree;
            public static readonly IntPtr OnResultPtr = Marshal.GetFunctionPointerForDelegate(onResult);
            public static readonly IntPtr OnErrorPtr = Marshal.GetFunctionPointerForDelegate(onError);
            public static readonly IntPtr OnStatePtr = Marshal.GetFunctionPointerForDelegate(onState);
            public static readonly IntPtr OnFreePtr = Marshal.GetFunctionPointerForDelegate(onFree);

            static Dispatcher Get(IntPtr ud) { return (Dispatcher)GCHandle.FromIntPtr(ud).Target; }

            static object Sender(Dispatcher d) { return d.Owner.Target; }

            // An exception must not unwind into native code: report it instead.
            static void Guard(Action a)
            {
                Threads.Attached();
                Threads.Enter();
                try { a(); }
                catch (Exception e) { Console.Error.WriteLine("fal-realtime: an event handler threw: " + e); }
                finally { Threads.Leave(); }
            }

            [MonoPInvokeCallback(typeof(Native.ResultFn))]
            static void OnResult(IntPtr ud, IntPtr msg)
            {
                Guard(() =>
                {
                    var d = Get(ud);
                    EventHandler<ResultEventArgs> h;
                    lock (d) h = d.OnResult;
                    if (h != null) h(Sender(d), new ResultEventArgs(Result.From(msg)));
                });
            }

            [MonoPInvokeCallback(typeof(Native.ErrorFn))]
            static void OnError(IntPtr ud, IntPtr err)
            {
                Guard(() =>
                {
                    var d = Get(ud);
                    EventHandler<ErrorEventArgs> h;
                    lock (d) h = d.OnError;
                    if (h != null) h(Sender(d), new ErrorEventArgs(FalRealtimeException.From(err, 14)));
                });
            }

            [MonoPInvokeCallback(typeof(Native.StateFn))]
            static void OnState(IntPtr ud, int state)
            {
                Guard(() =>
                {
                    var d = Get(ud);
                    EventHandler<StateEventArgs> h;
                    lock (d) h = d.OnState;
                    if (h != null) h(Sender(d), new StateEventArgs((ConnectionState)state));
                });
            }

            [MonoPInvokeCallback(typeof(Native.FreeFn))]
            static void OnFree(IntPtr ud)
            {
                Guard(() =>
                {
                    GCHandle gch = GCHandle.FromIntPtr(ud);
                    var d = (Dispatcher)gch.Target;
                    gch.Free();
                    Interlocked.Decrement(ref Interop.liveHandles);
                    d.Released.Set();
                });
            }
        }
    }

    /// <summary>
    /// A pull-style session: connected at creation (blocking; a CancellationToken
    /// cancels the connect), then Send and Receive / ReceiveAsync on the calling
    /// thread. No callbacks. One thread may receive while others send.
    /// </summary>
    public sealed class Session : IDisposable
    {
        readonly SessionHandle handle;
        volatile bool disposed;

        /// <summary>Connect; blocks until the socket is open or the client's open timeout expires.</summary>
        public Session(Client client, string app, ConnectOptions options)
            : this(client, app, options, CancellationToken.None) { }

        /// <summary>Connect; ct cancels the connect (OperationCanceledException).</summary>
        public Session(Client client, string app, ConnectOptions options, CancellationToken ct)
        {
            using (var s = new NativeStrings())
            {
                var co = Client.Options(options, s);
                IntPtr app8 = s.Add(app);
                IntPtr err = IntPtr.Zero;
                SessionHandle sh = null;
                int rc = Cancellable.Connect(ct, tok =>
                {
                    co.cancel = tok;
                    return Native.fal_rt_session_connect(client.Handle, app8, ref co, out sh, out err);
                });
                FalRealtimeException.Check(rc, err);
                handle = sh;
            }
        }

        public void SendJson(string json)
        {
            using (var s = new NativeStrings())
            {
                IntPtr err;
                FalRealtimeException.Check(Native.fal_rt_session_send_json(handle, s.Add(json), out err), err);
            }
        }

        public void Send(byte[] msgpack)
        {
            IntPtr err;
            FalRealtimeException.Check(
                Native.fal_rt_session_send(handle, msgpack, (UIntPtr)msgpack.Length, out err), err);
        }

        /// <summary>
        /// The next result, or null if none arrived within timeoutMs (-1: wait forever)
        /// or the wait was interrupted (Interrupt). Throws SessionEndedException once
        /// the session ended cleanly, FalRealtimeException for errors (after Server and
        /// Decode the session goes on), ObjectDisposedException after Dispose.
        /// </summary>
        public Result Receive(int timeoutMs)
        {
            IntPtr msg, err;
            int rc = Native.fal_rt_session_recv(handle, timeoutMs, out msg, out err);
            if (rc == 0)
            {
                try { return Result.From(msg); }
                finally { Native.fal_rt_message_free(msg); }
            }
            if (rc == Native.TimeoutExpired) return null;
            if (rc == Native.Interrupted)
            {
                if (disposed) throw new ObjectDisposedException("Session");
                return null;
            }
            if (rc == Native.End) throw new SessionEndedException();
            FalRealtimeException.Check(rc, err);
            return null;
        }

        /// <summary>
        /// The next result on a pool thread: ct cancels the wait
        /// (OperationCanceledException; the session goes on). No polling: the
        /// library's wait is woken (fal_rt_session_interrupt).
        /// </summary>
        public Task<Result> ReceiveAsync(CancellationToken ct)
        {
            return Task.Run(() =>
            {
                using (ct.Register(Interrupt))
                {
                    for (;;)
                    {
                        ct.ThrowIfCancellationRequested();
                        Result r = Receive(-1);
                        if (r != null) return r;
                    }
                }
            }, ct);
        }

        /// <summary>Wake a Receive waiting on another thread (it returns null); never blocks.</summary>
        public void Interrupt()
        {
            try { Native.fal_rt_session_interrupt(handle); }
            catch (ObjectDisposedException) { }
        }

        /// <summary>Close with code 1000; results on the way may still arrive.</summary>
        public void Close()
        {
            IntPtr err;
            FalRealtimeException.Check(Native.fal_rt_session_close(handle, out err), err);
        }

        /// <summary>Free the session; a Receive blocked on another thread is woken (ObjectDisposedException).</summary>
        public void Dispose()
        {
            disposed = true;
            Interrupt();
            handle.Dispose();
        }
    }

    /// <summary>One data frame of a raw WebSocket.</summary>
    public sealed class Frame
    {
        public byte[] Data { get; private set; }
        public bool IsText { get; private set; }
        public string Text { get { return IsText ? Encoding.UTF8.GetString(Data) : null; } }

        internal static Frame From(IntPtr f)
        {
            UIntPtr len;
            IntPtr data = Native.fal_rt_frame_data(f, out len);
            var r = new Frame { Data = new byte[(int)len], IsText = Native.fal_rt_frame_is_text(f) };
            if (data != IntPtr.Zero && r.Data.Length > 0) Marshal.Copy(data, r.Data, 0, r.Data.Length);
            return r;
        }
    }

    /// <summary>
    /// A raw WebSocket to an app (same URL and auth rules as realtime connections;
    /// ConnectOptions.Path, default none). Pull style: Receive / ReceiveAsync on the
    /// calling thread, sends from any thread. One thread may receive while others send.
    /// </summary>
    public sealed class WebSocket : IDisposable
    {
        readonly WsHandle handle;
        volatile bool disposed;

        public WebSocket(Client client, string app, ConnectOptions options)
            : this(client, app, options, CancellationToken.None) { }

        /// <summary>Connect (blocking); ct cancels the connect (OperationCanceledException).</summary>
        public WebSocket(Client client, string app, ConnectOptions options, CancellationToken ct)
        {
            using (var s = new NativeStrings())
            {
                var co = Client.Options(options, s);
                IntPtr app8 = s.Add(app);
                IntPtr err = IntPtr.Zero;
                WsHandle wh = null;
                int rc = Cancellable.Connect(ct, tok =>
                {
                    co.cancel = tok;
                    return Native.fal_rt_ws_connect(client.Handle, app8, ref co, IntPtr.Zero, out wh, out err);
                });
                FalRealtimeException.Check(rc, err);
                handle = wh;
            }
        }

        /// <summary>Send a text frame; blocks until it is written.</summary>
        public void SendText(string text)
        {
            using (var s = new NativeStrings())
            {
                IntPtr err;
                FalRealtimeException.Check(Native.fal_rt_ws_send_text(handle, s.Add(text ?? ""), out err), err);
            }
        }

        /// <summary>Send a binary frame; blocks until it is written.</summary>
        public void SendBinary(byte[] data)
        {
            IntPtr err;
            FalRealtimeException.Check(Native.fal_rt_ws_send_binary(handle, data, (UIntPtr)data.Length, out err), err);
        }

        /// <summary>
        /// Send a close frame with code (1000-1003, 1007-1014, 3000-4999) and reason
        /// (at most 123 UTF-8 bytes): FalRealtimeException(InvalidArgument) otherwise.
        /// The server's reply ends the socket; then CloseCode / CloseReason tell how.
        /// </summary>
        public void CloseWith(int code, string reason)
        {
            if (code < 0 || code > 65535) throw new ArgumentOutOfRangeException("code");
            byte[] r = Encoding.UTF8.GetBytes(reason ?? "");
            IntPtr err;
            FalRealtimeException.Check(Native.fal_rt_ws_close_with(handle, (ushort)code, r, (UIntPtr)r.Length, out err), err);
        }

        /// <summary>Close with code 1000.</summary>
        public void Close() { CloseWith(1000, ""); }

        /// <summary>The server's close code (1006: ended without one); 0 while the socket has not ended.</summary>
        public int CloseCode
        {
            get
            {
                ushort c;
                return Native.fal_rt_ws_close_code(handle, out c) == 0 ? c : 0;
            }
        }

        /// <summary>The reason of the server's close frame; null while the socket has not ended.</summary>
        public string CloseReason
        {
            get
            {
                IntPtr p;
                if (Native.fal_rt_ws_close_reason(handle, out p) != 0 || p == IntPtr.Zero) return null;
                try { return Native.Str(p); }
                finally { Native.fal_rt_string_free(p); }
            }
        }

        /// <summary>
        /// The next data frame, or null on timeout (-1: wait forever) or Interrupt.
        /// Throws SessionEndedException after a normal close, FalRealtimeException
        /// for an abnormal one (Closed with its CloseCode), ObjectDisposedException after Dispose.
        /// </summary>
        public Frame Receive(int timeoutMs)
        {
            IntPtr f, err;
            int rc = Native.fal_rt_ws_recv(handle, timeoutMs, out f, out err);
            if (rc == 0)
            {
                try { return Frame.From(f); }
                finally { Native.fal_rt_frame_free(f); }
            }
            if (rc == Native.TimeoutExpired) return null;
            if (rc == Native.Interrupted)
            {
                if (disposed) throw new ObjectDisposedException("WebSocket");
                return null;
            }
            if (rc == Native.End) throw new SessionEndedException();
            FalRealtimeException.Check(rc, err);
            return null;
        }

        /// <summary>The next frame on a pool thread; ct cancels the wait (the socket goes on).</summary>
        public Task<Frame> ReceiveAsync(CancellationToken ct)
        {
            return Task.Run(() =>
            {
                using (ct.Register(Interrupt))
                {
                    for (;;)
                    {
                        ct.ThrowIfCancellationRequested();
                        Frame f = Receive(-1);
                        if (f != null) return f;
                    }
                }
            }, ct);
        }

        /// <summary>Wake a Receive waiting on another thread (it returns null); never blocks.</summary>
        public void Interrupt()
        {
            try { Native.fal_rt_ws_interrupt(handle); }
            catch (ObjectDisposedException) { }
        }

        /// <summary>Close (1000, if open) and free; a blocked Receive is woken (ObjectDisposedException).</summary>
        public void Dispose()
        {
            disposed = true;
            Interrupt();
            handle.Dispose();
        }
    }

    /// <summary>The library's log records.</summary>
    public static class Log
    {
        static readonly object gate = new object();
        static readonly Native.LogFn logFn = OnLog;
        static readonly IntPtr logPtr = Marshal.GetFunctionPointerForDelegate(logFn);
        static Action<LogLevel, string, string> current;

        /// <summary>
        /// Route records at level and more severe to callback (null: off). It runs on
        /// any library thread, concurrently: keep it thread-safe and quick.
        /// Throws FalRealtimeException(WrongMode) if another logger owns the process.
        /// </summary>
        public static void SetLogger(LogLevel level, Action<LogLevel, string, string> callback)
        {
            lock (gate)
            {
                var previous = current;
                if (callback != null) current = callback;
                int rc = Native.fal_rt_set_logger((int)level, callback == null ? IntPtr.Zero : logPtr, IntPtr.Zero);
                if (rc != 0)
                {
                    current = previous;
                    throw FalRealtimeException.From(IntPtr.Zero, rc);
                }
                current = callback;
            }
        }

        [MonoPInvokeCallback(typeof(Native.LogFn))]
        static void OnLog(IntPtr ud, int level, IntPtr target, IntPtr message)
        {
            Threads.Attached();
            var f = current;
            if (f == null) return;
            try { f((LogLevel)level, Native.Str(target), Native.Str(message)); }
            catch (Exception) { }
        }
    }

    /// <summary>Library threads that call into managed code.</summary>
    internal static class Threads
    {
        static readonly Native.ThreadFn onStart = OnStart;
        static readonly Native.ThreadFn onStop = OnStop;
        static int installed;
        internal static int starts, stops;

        /// <summary>
        /// Install the library's thread hooks once, before the first client: every
        /// library thread is made a background thread when it starts (so it never
        /// holds up the runtime's exit) and counted. The threads themselves end
        /// when every Client, RealtimeConnection, Session and WebSocket is disposed.
        /// </summary>
        public static void Install()
        {
            if (Interlocked.Exchange(ref installed, 1) == 1) return;
            Native.fal_rt_set_thread_hooks(Marshal.GetFunctionPointerForDelegate(onStart),
                Marshal.GetFunctionPointerForDelegate(onStop), IntPtr.Zero);
        }

        [MonoPInvokeCallback(typeof(Native.ThreadFn))]
        static void OnStart(IntPtr ud)
        {
            Attached();
            Interlocked.Increment(ref starts);
        }

        [MonoPInvokeCallback(typeof(Native.ThreadFn))]
        static void OnStop(IntPtr ud) { Interlocked.Increment(ref stops); }

        [ThreadStatic] static bool seen;
        [ThreadStatic] static int depth;

        /// <summary>Whether this thread is running one of this binding's callbacks.</summary>
        public static bool InCallback { get { return depth > 0; } }

        public static void Enter() { depth++; }

        public static void Leave() { depth--; }

        /// <summary>
        /// Called first by every callback: Mono attaches a library thread on its
        /// first callback as a foreground thread, and would then wait for it (it
        /// never ends: the library's runtime lives as long as the process) at
        /// exit. Mark it background once.
        /// </summary>
        public static void Attached()
        {
            if (seen) return;
            seen = true;
            try { Thread.CurrentThread.IsBackground = true; } catch (Exception) { }
        }
    }

    /// <summary>Checks of this binding against the native library.</summary>
    public static class Interop
    {
        /// <summary>sizeof(fal_rt_client_options), sizeof(fal_rt_connect_options), sizeof(fal_rt_realtime_handler) as laid out here.</summary>
        public static int[] StructSizes() { return Native.StructSizes(); }

        /// <summary>fal_rt_version_number() of the loaded library.</summary>
        public static uint VersionNumber() { return Native.fal_rt_version_number(); }

        internal static int liveHandles;

        /// <summary>GCHandles this binding gave the library and the library has not released yet.</summary>
        public static int LiveGCHandles { get { return Volatile.Read(ref liveHandles); } }

        /// <summary>fal_rt_thread_count(): the library's threads running now (0 once everything is disposed).</summary>
        public static uint ThreadCount() { return Native.fal_rt_thread_count(); }

        /// <summary>How many library threads started and stopped (the thread hooks' counts).</summary>
        public static int[] ThreadHookCounts() { return new[] { Volatile.Read(ref Threads.starts), Volatile.Read(ref Threads.stops) }; }
    }

    internal static class Native
    {
        const string Lib = "fal_realtime";

        [UnmanagedFunctionPointer(CallingConvention.Cdecl)] public delegate void ResultFn(IntPtr ud, IntPtr msg);
        [UnmanagedFunctionPointer(CallingConvention.Cdecl)] public delegate void ErrorFn(IntPtr ud, IntPtr err);
        [UnmanagedFunctionPointer(CallingConvention.Cdecl)] public delegate void StateFn(IntPtr ud, int state);
        [UnmanagedFunctionPointer(CallingConvention.Cdecl)] public delegate void FreeFn(IntPtr ud);
        [UnmanagedFunctionPointer(CallingConvention.Cdecl)] public delegate void LogFn(IntPtr ud, int level, IntPtr target, IntPtr message);
        [UnmanagedFunctionPointer(CallingConvention.Cdecl)] public delegate void ThreadFn(IntPtr ud);
        [UnmanagedFunctionPointer(CallingConvention.Cdecl)] public delegate int TokenFn(IntPtr ud, IntPtr app, IntPtr buf);

        public const int TimeoutExpired = 104, End = 105, Interrupted = 109;

        [StructLayout(LayoutKind.Sequential)]
        public struct ClientOptions
        {
            public uint struct_size;
            public IntPtr key, run_host, rest_url, extra_ca_file;
            public byte allow_insecure;
            public uint open_timeout_ms;
            public ulong max_frame_size;
            public int token_retries, ping_interval_ms, ping_timeout_ms;
            public uint reserved;
            public byte server_side;
        }

        [StructLayout(LayoutKind.Sequential)]
        public struct ConnectOptions
        {
            public uint struct_size;
            public IntPtr connection_key;
            public int throttle_ms, max_buffering;
            public IntPtr path;
            public byte header_auth;
            public uint token_expiration_ms;
            public IntPtr token_provider, encoder, decoder, callbacks_user_data, free_callbacks_user_data;
            public byte client_only;
            public IntPtr cancel;
        }

        [StructLayout(LayoutKind.Sequential)]
        public struct RealtimeHandler
        {
            public uint struct_size;
            public IntPtr user_data, on_result, on_error, on_state, free_user_data;
        }

        public static string Str(IntPtr p)
        {
            if (p == IntPtr.Zero) return null;
            int n = 0;
            while (Marshal.ReadByte(p, n) != 0) n++;
            return Str(p, n);
        }

        public static string Str(IntPtr p, int len)
        {
            if (p == IntPtr.Zero) return null;
            var b = new byte[len];
            if (len > 0) Marshal.Copy(p, b, 0, len);
            return Encoding.UTF8.GetString(b);
        }

        [DllImport(Lib)] public static extern IntPtr fal_rt_result_name(int code);
        [DllImport(Lib)] public static extern int fal_rt_error_kind(IntPtr e);
        [DllImport(Lib)] public static extern IntPtr fal_rt_error_message(IntPtr e);
        [DllImport(Lib)] public static extern ushort fal_rt_error_status(IntPtr e);
        [DllImport(Lib)] public static extern ushort fal_rt_error_close_code(IntPtr e);
        [DllImport(Lib)] public static extern IntPtr fal_rt_error_body(IntPtr e);
        [DllImport(Lib)] public static extern void fal_rt_error_free(IntPtr e);
        [DllImport(Lib)] public static extern void fal_rt_string_free(IntPtr s);
        [DllImport(Lib)] public static extern IntPtr fal_rt_message_data(IntPtr m, out UIntPtr len);
        [DllImport(Lib)] public static extern IntPtr fal_rt_message_request_id(IntPtr m, out UIntPtr len);
        [DllImport(Lib)] public static extern int fal_rt_message_to_json(IntPtr m, out IntPtr json, out UIntPtr len, IntPtr err);
        [DllImport(Lib)] public static extern void fal_rt_message_free(IntPtr m);
        [DllImport(Lib)] public static extern int fal_rt_client_new(ref ClientOptions o, out ClientHandle c, out IntPtr err);
        [DllImport(Lib)] public static extern void fal_rt_client_free(IntPtr c);
        [DllImport(Lib)] public static extern int fal_rt_realtime_connect(ClientHandle c, IntPtr app, ref ConnectOptions o, ref RealtimeHandler h, out RealtimeHandle conn, out IntPtr err);
        [DllImport(Lib)] public static extern int fal_rt_realtime_send(RealtimeHandle c, byte[] data, UIntPtr len, out IntPtr err);
        [DllImport(Lib)] public static extern int fal_rt_realtime_send_json(RealtimeHandle c, IntPtr json, out IntPtr err);
        [DllImport(Lib)] public static extern int fal_rt_realtime_close(RealtimeHandle c);
        [DllImport(Lib)] public static extern int fal_rt_realtime_state(RealtimeHandle c, out int state);
        [DllImport(Lib)] public static extern void fal_rt_realtime_free(IntPtr c);
        [DllImport(Lib)] public static extern int fal_rt_session_connect(ClientHandle c, IntPtr app, ref ConnectOptions o, out SessionHandle s, out IntPtr err);
        [DllImport(Lib)] public static extern int fal_rt_session_send(SessionHandle s, byte[] data, UIntPtr len, out IntPtr err);
        [DllImport(Lib)] public static extern int fal_rt_session_send_json(SessionHandle s, IntPtr json, out IntPtr err);
        [DllImport(Lib)] public static extern int fal_rt_session_recv(SessionHandle s, int timeoutMs, out IntPtr msg, out IntPtr err);
        [DllImport(Lib)] public static extern int fal_rt_session_close(SessionHandle s, out IntPtr err);
        [DllImport(Lib)] public static extern void fal_rt_session_free(IntPtr s);
        [DllImport(Lib)] public static extern int fal_rt_set_logger(int level, IntPtr callback, IntPtr ud);
        [DllImport(Lib)] public static extern uint fal_rt_version_number();
        [DllImport(Lib)] public static extern int fal_rt_session_interrupt(SessionHandle s);
        [DllImport(Lib)] public static extern int fal_rt_set_thread_hooks(IntPtr onStart, IntPtr onStop, IntPtr ud);
        [DllImport(Lib)] public static extern uint fal_rt_thread_count();
        [DllImport(Lib)] public static extern int fal_rt_cancel_token_new(out CancelHandle t);
        [DllImport(Lib)] public static extern int fal_rt_cancel_token_cancel(CancelHandle t);
        [DllImport(Lib)] public static extern void fal_rt_cancel_token_free(IntPtr t);
        [DllImport(Lib)] public static extern int fal_rt_ws_connect(ClientHandle c, IntPtr app, ref ConnectOptions o, IntPtr handler, out WsHandle ws, out IntPtr err);
        [DllImport(Lib)] public static extern int fal_rt_ws_send_text(WsHandle ws, IntPtr text, out IntPtr err);
        [DllImport(Lib)] public static extern int fal_rt_ws_send_binary(WsHandle ws, byte[] data, UIntPtr len, out IntPtr err);
        [DllImport(Lib)] public static extern int fal_rt_ws_close_with(WsHandle ws, ushort code, byte[] reason, UIntPtr len, out IntPtr err);
        [DllImport(Lib)] public static extern int fal_rt_ws_close_code(WsHandle ws, out ushort code);
        [DllImport(Lib)] public static extern int fal_rt_ws_close_reason(WsHandle ws, out IntPtr reason);
        [DllImport(Lib)] public static extern int fal_rt_ws_recv(WsHandle ws, int timeoutMs, out IntPtr frame, out IntPtr err);
        [DllImport(Lib)] public static extern int fal_rt_ws_interrupt(WsHandle ws);
        [DllImport(Lib)] public static extern void fal_rt_ws_free(IntPtr ws);
        [DllImport(Lib)] public static extern IntPtr fal_rt_frame_data(IntPtr f, out UIntPtr len);
        [DllImport(Lib)] [return: MarshalAs(UnmanagedType.U1)] public static extern bool fal_rt_frame_is_text(IntPtr f);
        [DllImport(Lib)] public static extern void fal_rt_frame_free(IntPtr f);
        [DllImport(Lib)] public static extern int fal_rt_buffer_append(IntPtr buf, byte[] data, UIntPtr len);

        /// <summary>sizeof of the native structs as this binding lays them out (checked by the tests).</summary>
        public static int[] StructSizes()
        {
            return new[] {
                Marshal.SizeOf(typeof(ClientOptions)), Marshal.SizeOf(typeof(ConnectOptions)),
                Marshal.SizeOf(typeof(RealtimeHandler)),
            };
        }
    }
}
