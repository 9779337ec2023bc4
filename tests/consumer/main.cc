// Consumer of an installed syncconfig: compiles against the installed headers, links the
// installed library and its dependencies, and exercises a code path that needs no database
// (option validation happens before any connection is attempted).
#include <syncconfig/syncconfig.h>

#include <cstdio>
#include <cstdlib>

int main() {
  syncconfig::Options opts;
  opts.table_name = "Bad";  // Upper case: not a valid table name.
  try {
    syncconfig::Store::open("", opts);
  } catch (const syncconfig::Error& e) {
    if (e.code() != syncconfig::ErrorCode::kInvalidArgument) {
      std::fprintf(stderr, "consumer: expected invalid_argument, got %s: %s\n",
                   std::string(syncconfig::to_string(e.code())).c_str(), e.what());
      return EXIT_FAILURE;
    }
    std::printf("consumer ok\n");
    return EXIT_SUCCESS;
  }
  std::fprintf(stderr, "consumer: Store::open accepted table_name \"Bad\"\n");
  return EXIT_FAILURE;
}
