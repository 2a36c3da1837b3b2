{
  "targets": [
    {
      "target_name": "audioloop_native",
      "sources": ["native/addon.c", "native/backend.c", "native/cable.c", "native/format.c", "native/host.c", "native/pw-backend.c", "native/pa-load.c"],
      "defines": ["NAPI_VERSION=8"],
      "cflags": ["<!@(pkg-config --cflags libpipewire-0.3)", "-std=gnu11", "-Wall", "-Wextra", "-Wno-unused-parameter", "-Wno-missing-field-initializers"],
      "libraries": ["<!@(pkg-config --libs libpipewire-0.3)", "-lm", "-ldl"]
    },
    {
      "target_name": "audioloop_pulse",
      "sources": ["native/pa-backend.c"],
      "defines": ["NAPI_VERSION=8"],
      "cflags": ["<!@(pkg-config --cflags libpipewire-0.3 libpulse)", "-std=gnu11", "-Wall", "-Wextra", "-Wno-unused-parameter", "-Wno-missing-field-initializers"],
      "libraries": ["<!@(pkg-config --libs libpulse)", "-lm"]
    }
  ]
}
