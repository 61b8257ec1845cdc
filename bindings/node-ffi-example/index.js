// A third host over the same shared library: Node.js through koffi, no
// native addon. Connects to the emulator (or fal.ai), sends, receives.
//
//   node index.js 127.0.0.1:PORT [APP]     (the local emulator, key test-key)
//   FAL_KEY=... node index.js - fal-ai/fast-lcm-diffusion
//
// The library comes from FAL_RT_LIB, else ../../target/release/libfal_realtime.so.
//
// Two styles:
// 1. Callbacks (fal_rt_realtime_*): the library calls them on its worker
//    threads; koffi queues each call to the JS thread and the worker waits, so
//    the JS thread must keep its event loop running (await, never block) while
//    callbacks can come, and free with fal_rt_realtime_free_nowait (a blocking
//    free could wait for a callback that waits for the JS thread).
// 2. Pull (fal_rt_session_*): no callbacks at all; recv runs on koffi's
//    worker pool with .async so the event loop stays free.
'use strict';

const path = require('path');
const koffi = require('koffi');

const host = process.argv[2] || process.env.FAL_RT_EMULATOR || '-';
const app = process.argv[3] || 'demo/echo';
const libPath = process.env.FAL_RT_LIB || path.join(__dirname, '..', '..', 'target', 'release', 'libfal_realtime.so');
const lib = koffi.load(libPath);

// ---- Types (mirroring include/fal_realtime.h) ------------------------------
const FAL_RT_OK = 0;
const FAL_RT_THROTTLE_NONE = -1;
const STATE_CLOSED = 4;

const ClientOptions = koffi.struct('fal_rt_client_options', {
  struct_size: 'uint32_t',
  key: 'const char *',
  run_host: 'const char *',
  rest_url: 'const char *',
  extra_ca_file: 'const char *',
  allow_insecure: 'bool',
  open_timeout_ms: 'uint32_t',
  max_frame_size: 'uint64_t',
  token_retries: 'int32_t',
});
const ConnectOptions = koffi.struct('fal_rt_connect_options', {
  struct_size: 'uint32_t',
  connection_key: 'const char *',
  throttle_ms: 'int32_t',
  max_buffering: 'int32_t',
  path: 'const char *',
  header_auth: 'bool',
  token_expiration_ms: 'uint32_t',
  token_provider: 'void *',
  encoder: 'void *',
  decoder: 'void *',
  callbacks_user_data: 'void *',
  free_callbacks_user_data: 'void *',
});
const OnResult = koffi.proto('void fal_rt_on_result(void *user_data, void *message)');
const OnError = koffi.proto('void fal_rt_on_error(void *user_data, void *error)');
const OnState = koffi.proto('void fal_rt_on_state(void *user_data, int32_t state)');
const Handler = koffi.struct('fal_rt_realtime_handler', {
  struct_size: 'uint32_t',
  user_data: 'void *',
  on_result: 'fal_rt_on_result *',
  on_error: 'fal_rt_on_error *',
  on_state: 'fal_rt_on_state *',
  free_user_data: 'void *',
});

const f = {
  version: lib.func('const char *fal_rt_version(void)'),
  resultName: lib.func('const char *fal_rt_result_name(int32_t code)'),
  clientNew: lib.func('int32_t fal_rt_client_new(const fal_rt_client_options *options, _Out_ void **out, _Out_ void **out_error)'),
  clientFree: lib.func('void fal_rt_client_free(void *client)'),
  errorMessage: lib.func('const char *fal_rt_error_message(void *error)'),
  errorKind: lib.func('int32_t fal_rt_error_kind(void *error)'),
  errorFree: lib.func('void fal_rt_error_free(void *error)'),
  messageToJson: lib.func('int32_t fal_rt_message_to_json(void *message, _Out_ void **out_json, _Out_ size_t *out_len, void *out_error)'),
  stringFree: lib.func('void fal_rt_string_free(void *s)'),
  messageFree: lib.func('void fal_rt_message_free(void *message)'),
  realtimeConnect: lib.func('int32_t fal_rt_realtime_connect(void *client, const char *app, const fal_rt_connect_options *options, const fal_rt_realtime_handler *handler, _Out_ void **out, _Out_ void **out_error)'),
  realtimeSendJson: lib.func('int32_t fal_rt_realtime_send_json(void *conn, const char *json, _Out_ void **out_error)'),
  realtimeClose: lib.func('int32_t fal_rt_realtime_close(void *conn)'),
  realtimeFreeNowait: lib.func('void fal_rt_realtime_free_nowait(void *conn)'),
  sessionConnect: lib.func('int32_t fal_rt_session_connect(void *client, const char *app, const fal_rt_connect_options *options, _Out_ void **out, _Out_ void **out_error)'),
  sessionSendJson: lib.func('int32_t fal_rt_session_send_json(void *session, const char *json, _Out_ void **out_error)'),
  sessionRecv: lib.func('int32_t fal_rt_session_recv(void *session, int32_t timeout_ms, _Out_ void **out_message, _Out_ void **out_error)'),
  sessionClose: lib.func('int32_t fal_rt_session_close(void *session, _Out_ void **out_error)'),
  sessionFree: lib.func('void fal_rt_session_free(void *session)'),
};

// Throw a JS Error for a failed call, freeing the C error.
function check(rc, errOut) {
  if (rc === FAL_RT_OK) return;
  const err = errOut && errOut[0];
  const msg = err ? f.errorMessage(err) : '';
  if (err) f.errorFree(err);
  throw new Error(`fal-realtime ${f.resultName(rc)}: ${msg}`);
}

function messageJson(msg) {
  const out = [null];
  const len = [0];
  check(f.messageToJson(msg, out, len, null));
  const json = koffi.decode.string(out[0], Number(len[0]));
  f.stringFree(out[0]);
  return json;
}

function sizeOf(t) {
  return koffi.sizeof(t);
}

async function callbackStyle(client, frames) {
  const results = [];
  const errors = [];
  let wake = () => {};
  const changed = () => wake();
  const waitFor = (pred, what) =>
    new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), 30000);
      wake = () => {
        if (pred()) {
          clearTimeout(timer);
          resolve();
        }
      };
      wake();
    });
  let closed = 0;

  // Registered callbacks stay valid until unregistered.
  const onResult = koffi.register((_ud, msg) => {
    results.push(messageJson(msg)); // msg is borrowed for this call only
    changed();
  }, koffi.pointer(OnResult));
  const onError = koffi.register((_ud, err) => {
    errors.push(`${f.resultName(f.errorKind(err))}: ${f.errorMessage(err)}`);
    changed();
  }, koffi.pointer(OnError));
  const onState = koffi.register((_ud, state) => {
    if (state === STATE_CLOSED) closed++;
    changed();
  }, koffi.pointer(OnState));

  const handler = {
    struct_size: sizeOf(Handler),
    user_data: null,
    on_result: onResult,
    on_error: onError,
    on_state: onState,
    free_user_data: null,
  };
  const opts = { struct_size: sizeOf(ConnectOptions), throttle_ms: FAL_RT_THROTTLE_NONE };
  const out = [null];
  const errOut = [null];
  check(f.realtimeConnect(client, app, opts, handler, out, errOut), errOut);
  const conn = out[0];
  try {
    for (let i = 0; i < frames; i++) {
      check(f.realtimeSendJson(conn, JSON.stringify({ prompt: 'a cat', frame: i, request_id: `node-${i}` }), errOut), errOut);
      await waitFor(() => results.length > i || errors.length > 0, `result ${i}`);
      if (errors.length > 0) throw new Error(errors.join('; '));
      console.log(`node: result ${i}: ${results[i]}`);
    }
    check(f.realtimeClose(conn));
    await waitFor(() => closed > 0, 'the close');
  } finally {
    f.realtimeFreeNowait(conn); // never waits; no callback starts after this
    // Let any callback already queued to this thread run before unregistering.
    await new Promise((r) => setImmediate(r));
    koffi.unregister(onResult);
    koffi.unregister(onError);
    koffi.unregister(onState);
  }
  return results;
}

async function pullStyle(client) {
  const out = [null];
  const errOut = [null];
  check(f.sessionConnect(client, app, null, out, errOut), errOut);
  const session = out[0];
  try {
    check(f.sessionSendJson(session, JSON.stringify({ prompt: 'a dog', request_id: 'node-pull' }), errOut), errOut);
    const msgOut = [null];
    const recvErr = [null];
    // Blocking recv on koffi's worker pool: the event loop stays free.
    const rc = await new Promise((resolve, reject) =>
      f.sessionRecv.async(session, 30000, msgOut, recvErr, (e, r) => (e ? reject(e) : resolve(r))),
    );
    check(rc, recvErr);
    const json = messageJson(msgOut[0]);
    f.messageFree(msgOut[0]);
    console.log(`node: pulled: ${json}`);
    check(f.sessionClose(session, errOut), errOut);
    return json;
  } finally {
    f.sessionFree(session);
  }
}

async function main() {
  console.log(`node: fal-realtime ${f.version()} via koffi ${koffi.version}`);
  const copts = { struct_size: sizeOf(ClientOptions) };
  if (host !== '-') {
    Object.assign(copts, {
      key: 'test-key',
      run_host: `ws://${host}`,
      rest_url: `http://${host}`,
      allow_insecure: true,
    });
  }
  const out = [null];
  const errOut = [null];
  check(f.clientNew(copts, out, errOut), errOut);
  const client = out[0];
  try {
    const results = await callbackStyle(client, 3);
    const pulled = await pullStyle(client);
    const ok =
      results.length === 3 &&
      results.every((r, i) => JSON.parse(r).request_id === `node-${i}`) &&
      JSON.parse(pulled).request_id === 'node-pull';
    console.log(`node: done: ${results.length} results, pulled ${pulled ? 1 : 0}`);
    if (!ok) throw new Error('unexpected results');
  } finally {
    f.clientFree(client);
  }
}

main().catch((e) => {
  console.error(`node: FAILED: ${e.message}`);
  process.exit(1);
});
