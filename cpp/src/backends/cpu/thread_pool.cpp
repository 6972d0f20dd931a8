#include "backends/cpu/thread_pool.h"

namespace lfmrt::cpu {

namespace {
// Workers spin this many polls before sleeping: a decode step launches ~100 parallel regions
// a few microseconds apart, and waking a sleeping thread costs more than the work between them.
constexpr int kSpinPolls = 20000;
}  // namespace

ThreadPool::ThreadPool(int n_threads) {
    for (int t = 1; t < n_threads; ++t) workers_.emplace_back([this, t] { worker_loop(t); });
}

ThreadPool::~ThreadPool() {
    {
        std::lock_guard<std::mutex> lock(mutex_);
        stopping_ = true;
        generation_.fetch_add(1);
    }
    wake_.notify_all();
    for (auto& worker : workers_) worker.join();
}

void ThreadPool::run_tasks(int thread) {
    for (size_t i = next_task_.fetch_add(1); i < n_tasks_; i = next_task_.fetch_add(1)) (*task_)(i, thread);
}

void ThreadPool::parallel_for(size_t n_tasks, const std::function<void(size_t, int)>& task) {
    if (workers_.empty() || n_tasks <= 1) {
        for (size_t i = 0; i < n_tasks; ++i) task(i, 0);
        return;
    }
    {
        std::lock_guard<std::mutex> lock(mutex_);
        task_ = &task;
        n_tasks_ = n_tasks;
        next_task_.store(0);
        busy_workers_.store(static_cast<int>(workers_.size()));
        generation_.fetch_add(1);
    }
    wake_.notify_all();
    run_tasks(0);
    for (int polls = 0; busy_workers_.load(std::memory_order_acquire) != 0; ++polls) {
        if (polls > kSpinPolls) std::this_thread::yield();
    }
}

void ThreadPool::worker_loop(int thread) {
    uint64_t seen = 0;
    for (;;) {
        for (int polls = 0; polls < kSpinPolls && generation_.load(std::memory_order_acquire) == seen; ++polls) {
        }
        if (generation_.load(std::memory_order_acquire) == seen) {
            std::unique_lock<std::mutex> lock(mutex_);
            wake_.wait(lock, [&] { return generation_.load() != seen; });
        }
        {
            // Taking the lock pairs with parallel_for's publication of task_ and n_tasks_.
            std::lock_guard<std::mutex> lock(mutex_);
            if (stopping_) return;
            seen = generation_.load();
        }
        run_tasks(thread);
        busy_workers_.fetch_sub(1, std::memory_order_release);
    }
}

}  // namespace lfmrt::cpu
