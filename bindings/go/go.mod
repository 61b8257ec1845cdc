module github.com/fal-ai/fal-realtime/bindings/go

go 1.19
