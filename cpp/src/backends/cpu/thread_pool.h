// A fixed set of worker threads owned by one Model. The calling thread takes part in every
// parallel_for, so a pool of N threads starts N-1 workers.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace lfmrt::cpu {

class ThreadPool {
public:
    explicit ThreadPool(int n_threads);
    ~ThreadPool();
    ThreadPool(const ThreadPool&) = delete;
    ThreadPool& operator=(const ThreadPool&) = delete;

    int size() const { return static_cast<int>(workers_.size()) + 1; }

    // Runs task(i, thread) for every i in [0, n_tasks) and returns when all are done.
    // `thread` is in [0, size()) and is unique among concurrently running calls, so it can
    // index per-thread scratch. Which thread runs which task varies from call to call, so
    // a task's result must not depend on `thread`. Not reentrant: one call at a time.
    void parallel_for(size_t n_tasks, const std::function<void(size_t task, int thread)>& task);

private:
    void worker_loop(int thread);
    void run_tasks(int thread);

    std::vector<std::thread> workers_;
    std::mutex mutex_;
    std::condition_variable wake_;
    std::atomic<uint64_t> generation_{0};  // bumped once per parallel_for
    std::atomic<size_t> next_task_{0};
    std::atomic<int> busy_workers_{0};
    size_t n_tasks_ = 0;
    const std::function<void(size_t, int)>* task_ = nullptr;
    bool stopping_ = false;
};

}  // namespace lfmrt::cpu
