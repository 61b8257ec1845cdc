//! Python bindings of fal-realtime (work in progress).
