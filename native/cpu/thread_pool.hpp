// A small persistent thread pool for the cpu backend: the caller plus n-1 workers share the
// tasks of one job, claimed one at a time from an atomic word.
//
// The caller never waits for a worker that has not claimed a task: it runs whatever tasks are
// left itself and waits only for tasks already under way. So a worker that the OS has not
// scheduled (on a machine shared with other work) costs nothing but its share of parallelism.
//
// Waiting is spin-then-sleep: a worker that finds no work spins (with pause) for a short while,
// since the next job of the same forward pass follows within microseconds, then sleeps on a
// condition variable; the caller waiting for the last task does the same with a shorter spin.
// An idle pool costs nothing and a busy one does not hold cores that other threads need.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>
#include <type_traits>
#include <vector>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define SPECULA_CPU_RELAX() _mm_pause()
#else
#define SPECULA_CPU_RELAX() ((void)0)
#endif

namespace specula::cpu {

class ThreadPool {
public:
    using Fn = void (*)(void *ctx, int task, int thread);
    static constexpr int MAX_TASKS = (1 << 20) - 1;

    // Starts up to n_threads - 1 workers; fewer when the system refuses to start more.
    explicit ThreadPool(int n_threads) {
        for (int i = 1; i < n_threads; i++) {
            try {
                workers_.emplace_back([this, i] { worker_main(i); });
            } catch (...) {
                break;
            }
        }
    }

    ~ThreadPool() {
        {
            std::lock_guard<std::mutex> lock(mu_);
            stop_.store(true, std::memory_order_release);
        }
        cv_.notify_all();
        for (auto &t : workers_) t.join();
    }

    ThreadPool(const ThreadPool &) = delete;
    ThreadPool &operator=(const ThreadPool &) = delete;

    int size() const { return (int)workers_.size() + 1; }

    // Runs fn(ctx, task, thread) for every task in [0, n_tasks), thread in [0, size()), and
    // returns when all are done. One job at a time (the caller serializes).
    void run(int n_tasks, Fn fn, void *ctx) {
        if (n_tasks <= 0) return;
        if (workers_.empty() || n_tasks == 1 || n_tasks > MAX_TASKS) {
            for (int t = 0; t < n_tasks; t++) fn(ctx, t, 0);
            return;
        }
        fn_ = fn;
        ctx_ = ctx;
        done_.store(0, std::memory_order_relaxed);
        gen_ = (gen_ + 1) & GEN_MASK;
        {
            std::lock_guard<std::mutex> lock(mu_);
            job_.store(pack(gen_, (uint64_t)n_tasks, 0), std::memory_order_release);
        }
        cv_.notify_all();
        work(0, gen_);
        auto finished = [&] { return done_.load(std::memory_order_acquire) == n_tasks; };
        if (!finished() && !spin_until(finished, 50)) {
            std::unique_lock<std::mutex> lock(mu_);
            done_cv_.wait(lock, finished);
        }
    }

    // f(task, thread) for every task.
    template <class F>
    void parallel_for(int n_tasks, F &&f) {
        using Fd = std::remove_reference_t<F>;
        run(n_tasks, [](void *c, int task, int thread) { (*(Fd *)c)(task, thread); }, (void *)&f);
    }

private:
    // job_: generation (24 bits) | task count (20) | next task (20).
    static constexpr uint64_t GEN_MASK = (1u << 24) - 1;
    static uint64_t pack(uint64_t gen, uint64_t n, uint64_t next) { return gen << 40 | n << 20 | next; }
    static uint64_t gen_of(uint64_t j) { return j >> 40; }
    static uint64_t n_of(uint64_t j) { return (j >> 20) & MAX_TASKS; }
    static uint64_t next_of(uint64_t j) { return j & MAX_TASKS; }

    template <class Pred>
    static bool spin_until(Pred pred, int64_t micros) {
        auto start = std::chrono::steady_clock::now();
        for (;;) {
            for (int i = 0; i < 64; i++) {
                if (pred()) return true;
                SPECULA_CPU_RELAX();
            }
            if (std::chrono::steady_clock::now() - start > std::chrono::microseconds(micros)) return pred();
        }
    }

    // Claims and runs tasks of generation g until none is left. A claim succeeds only while g is
    // the current job, and the job cannot end (nor its fields change) while a claimed task runs.
    void work(int thread, uint64_t g) {
        uint64_t cur = job_.load(std::memory_order_acquire);
        for (;;) {
            if (gen_of(cur) != g || next_of(cur) >= n_of(cur)) return;
            if (!job_.compare_exchange_weak(cur, cur + 1, std::memory_order_acq_rel, std::memory_order_acquire)) continue;
            fn_(ctx_, (int)next_of(cur), thread);
            if (done_.fetch_add(1, std::memory_order_acq_rel) + 1 == (int)n_of(cur)) {
                std::lock_guard<std::mutex> lock(mu_);
                done_cv_.notify_all();
            }
            cur = job_.load(std::memory_order_acquire);
        }
    }

    void worker_main(int id) {
        uint64_t seen = 0;
        for (;;) {
            auto ready = [&] {
                return stop_.load(std::memory_order_acquire) || gen_of(job_.load(std::memory_order_acquire)) != seen;
            };
            if (!spin_until(ready, 200)) {
                std::unique_lock<std::mutex> lock(mu_);
                cv_.wait(lock, ready);
            }
            if (stop_.load(std::memory_order_acquire)) return;
            seen = gen_of(job_.load(std::memory_order_acquire));
            work(id, seen);
        }
    }

    std::vector<std::thread> workers_;
    std::mutex mu_;
    std::condition_variable cv_, done_cv_;
    std::atomic<uint64_t> job_{0};
    std::atomic<int> done_{0};
    std::atomic<bool> stop_{false};
    uint64_t gen_ = 0; // the caller's
    Fn fn_ = nullptr;
    void *ctx_ = nullptr;
};

} // namespace specula::cpu
