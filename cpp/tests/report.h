// The C++ test programs' tally: one PASS / FAIL line per check (flushed, so a crash later leaves
// the lines before it), and a summary whose failure count becomes the exit status.
#pragma once

#include <cstdio>
#include <string>

namespace lfmrt::test {

class Report {
public:
    void record(bool ok, const std::string& name, const std::string& detail = "") {
        (ok ? passed_ : failed_)++;
        std::printf("%s %s%s%s\n", ok ? "PASS" : "FAIL", name.c_str(), detail.empty() ? "" : ": ", detail.c_str());
        std::fflush(stdout);
    }
    int failed() const { return failed_; }
    void summary() const { std::printf("%d passed, %d failed\n", passed_, failed_); }

private:
    int passed_ = 0;
    int failed_ = 0;
};

}  // namespace lfmrt::test
