// A test PKI made at test time with the `openssl` program (Debian's openssl package): CAs and
// server certificates for given names, in a temporary directory removed with the Pki. Not
// thread-safe: make them on the test's thread.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

namespace syncconfig::testing {

namespace fs = std::filesystem;

inline void sh(const std::string& command) {
  const std::string quiet = command + " >/dev/null 2>&1";
  ASSERT_EQ(std::system(quiet.c_str()), 0) << command;
}

struct Leaf {
  std::string cert;
  std::string key;
};

class Pki {
 public:
  Pki()
      : dir_(fs::temp_directory_path() /
             ("syncconfig_tls_" + std::to_string(::getpid()) + "_" + std::to_string(counter()++))) {
    fs::create_directories(dir_);
  }
  ~Pki() {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  const fs::path& dir() const { return dir_; }

  // A self-signed CA named `name`; returns its certificate's path (its key beside it).
  std::string ca(const std::string& name) {
    const fs::path p = dir_ / name;
    sh("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2"
       " -subj /CN=" +
       name + " -addext basicConstraints=critical,CA:TRUE" +
       " -addext keyUsage=critical,keyCertSign,cRLSign -keyout " + p.string() + ".key -out " +
       p.string() + ".pem");
    return p.string() + ".pem";
  }

  // A server certificate for `san` (e.g. "DNS:localhost,IP:127.0.0.1") signed by CA `ca`.
  Leaf leaf(const std::string& ca, const std::string& name, const std::string& san,
            int serial = 1) {
    const fs::path p = dir_ / name;
    std::ofstream(p.string() + ".ext") << "subjectAltName=" << san
                                       << "\nbasicConstraints=CA:FALSE\n"
                                          "extendedKeyUsage=serverAuth\n";
    sh("openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj /CN=" +
       name + " -keyout " + p.string() + ".key -out " + p.string() + ".csr");
    sh("openssl x509 -req -days 2 -in " + p.string() + ".csr -CA " + (dir_ / ca).string() +
       ".pem -CAkey " + (dir_ / ca).string() + ".key -set_serial " + std::to_string(serial) +
       " -extfile " + p.string() + ".ext -out " + p.string() + ".pem");
    return {p.string() + ".pem", p.string() + ".key"};
  }

 private:
  static int& counter() {
    static int n = 0;
    return n;
  }
  fs::path dir_;
};

inline void copy_over(const std::string& from, const std::string& to) {
  fs::copy_file(from, to, fs::copy_options::overwrite_existing);
}

}  // namespace syncconfig::testing
