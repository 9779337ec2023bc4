// Consumer of syncconfig::embedded (EmbeddedPostgres), installed beside the core library: compiles
// against the installed header and links the installed archive. Starts no server: promote() of
// a server that is not running is an error naming it, which needs no PostgreSQL binaries.
#include <syncconfig/embedded_postgres.h>
#include <syncconfig/error.h>

#include <cstdio>
#include <cstdlib>
#include <string>

int main() {
  syncconfig::EmbeddedPostgres server;
  try {
    server.promote();
  } catch (const syncconfig::Error& e) {
    if (std::string(e.what()).find("not running") == std::string::npos) {
      std::fprintf(stderr, "consumer_embedded: unexpected error: %s\n", e.what());
      return EXIT_FAILURE;
    }
    std::printf("consumer ok\n");
    return EXIT_SUCCESS;
  }
  std::fprintf(stderr, "consumer_embedded: promote() of a stopped server succeeded\n");
  return EXIT_FAILURE;
}
