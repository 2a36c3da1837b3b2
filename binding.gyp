{
  "targets": [
    {
      "target_name": "audioloop_native",
      "sources": ["native/audioloop.c"],
      "cflags": ["<!@(pkg-config --cflags libpipewire-0.3)", "-std=gnu11", "-Wall", "-Wextra", "-Wno-unused-parameter", "-Wno-missing-field-initializers"],
      "libraries": ["<!@(pkg-config --libs libpipewire-0.3)"]
    }
  ]
}
