//! The C ABI (`fal_rt_*`). See `include/fal_realtime.h`.
