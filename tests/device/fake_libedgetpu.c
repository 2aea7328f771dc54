/* Stand-ins for Coral's libedgetpu.so.1, built by the tests with gcc (see
 * conftest.py's fake_libedgetpu). They export the delegate plugin C API that
 * the runtime's load_delegate calls, plus libedgetpu's edgetpu_version.
 *
 *   BEHAVIOUR 0 "working":  returns a real TfLiteDelegate whose Prepare claims
 *                           no nodes, so the interpreter runs every op itself
 *                           and the model's answers are the CPU's (a usable
 *                           delegate, unlike an arbitrary pointer).
 *   BEHAVIOUR 1 "crashing": SIGSEGV inside tflite_plugin_create_delegate, as
 *                           libedgetpu builds for old TensorFlow do in newer
 *                           interpreters.
 *   BEHAVIOUR 2 "hanging":  never returns from tflite_plugin_create_delegate.
 *
 * Each create appends a line to $FAKE_EDGETPU_LOG (when set), so a test can
 * count how often a delegate was created. The struct layout is TfLiteDelegate
 * from LiteRT's tensorflow/lite/core/c/common.h.
 */
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

typedef struct TfLiteDelegate {
  void* data_;
  int (*Prepare)(void* context, struct TfLiteDelegate* delegate);
  int (*CopyFromBufferHandle)(void* context, struct TfLiteDelegate* delegate, int handle, void* tensor);
  int (*CopyToBufferHandle)(void* context, struct TfLiteDelegate* delegate, int handle, void* tensor);
  void (*FreeBufferHandle)(void* context, struct TfLiteDelegate* delegate, int* handle);
  int64_t flags;
  void* opaque_delegate_builder;
} TfLiteDelegate;

static int prepare_claims_no_nodes(void* context, TfLiteDelegate* delegate) {
  (void)context;
  (void)delegate;
  return 0; /* kTfLiteOk */
}

static TfLiteDelegate delegate = {NULL, prepare_claims_no_nodes, NULL, NULL, NULL, 0, NULL};

const char* edgetpu_version(void) { return "fake " BEHAVIOUR_NAME " libedgetpu, RuntimeVersion(14)"; }

TfLiteDelegate* tflite_plugin_create_delegate(char** keys, char** values, size_t count, void (*report)(const char*)) {
  (void)keys;
  (void)values;
  (void)count;
  (void)report;
  const char* log = getenv("FAKE_EDGETPU_LOG");
  if (log) {
    FILE* f = fopen(log, "a");
    if (f) {
      fprintf(f, "create %d\n", (int)getpid());
      fclose(f);
    }
  }
#if BEHAVIOUR == 1
  raise(SIGSEGV);
#elif BEHAVIOUR == 2
  for (;;) pause();
#endif
  return &delegate;
}

void tflite_plugin_destroy_delegate(TfLiteDelegate* d) { (void)d; }
