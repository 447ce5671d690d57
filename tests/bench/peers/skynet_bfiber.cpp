// skynet_bfiber.cpp - skynet with Boost.Fiber: SIZE leaf fibers in a tree of
// 10 children per node; every node launches its children (detached, 64 KiB
// fixedsize_stack as weft's runs) and pops their results from a
// buffered_channel, like the Go version's per-node channel.
//
// usage: skynet_bfiber THREADS [SIZE, default 1000000]
//   THREADS=1: the default round_robin scheduler on the calling thread.
//   THREADS>1: algo::work_stealing on THREADS threads (the main thread and
//              THREADS-1 helpers that sleep in the scheduler until done).
// prints: RESULT peer=bfiber variant=threadsN test=skynet size=.. sum=.. ms=..
#include <boost/fiber/all.hpp>
#include <boost/fiber/algo/work_stealing.hpp>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <thread>
#include <vector>

using chan_t = boost::fibers::buffered_channel<std::int64_t>;
static const std::size_t STACK = 64 * 1024;

static void skynet(chan_t *c, std::int64_t num, std::int64_t size, std::int64_t div)
{
    if (size == 1) {
        c->push(num);
        return;
    }
    chan_t rc(16);
    for (std::int64_t i = 0; i < div; i++) {
        std::int64_t sub = num + i * (size / div);
        boost::fibers::fiber(boost::fibers::launch::post, std::allocator_arg,
                             boost::fibers::fixedsize_stack(STACK), skynet, &rc, sub, size / div, div)
            .detach();
    }
    std::int64_t sum = 0;
    for (std::int64_t i = 0; i < div; i++)
        sum += rc.value_pop();
    c->push(sum);
}

int main(int argc, char **argv)
{
    int threads = argc > 1 ? std::atoi(argv[1]) : 1;
    std::int64_t size = argc > 2 ? std::atoll(argv[2]) : 1000000;
    if (threads < 1)
        return 2;
    boost::fibers::mutex mtx;
    boost::fibers::condition_variable_any cv;
    bool done = false;
    std::vector<std::thread> helpers;
    if (threads > 1) {
        for (int i = 1; i < threads; i++)
            helpers.emplace_back([&] {
                boost::fibers::use_scheduling_algorithm<boost::fibers::algo::work_stealing>(threads);
                std::unique_lock<boost::fibers::mutex> lk(mtx);
                cv.wait(lk, [&] { return done; });
            });
        boost::fibers::use_scheduling_algorithm<boost::fibers::algo::work_stealing>(threads);
    }
    chan_t c(2);
    auto t0 = std::chrono::steady_clock::now();
    boost::fibers::fiber(boost::fibers::launch::post, std::allocator_arg,
                         boost::fibers::fixedsize_stack(STACK), skynet, &c, std::int64_t(0), size,
                         std::int64_t(10))
        .detach();
    std::int64_t sum = c.value_pop();
    double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    if (threads > 1) {
        {
            std::unique_lock<boost::fibers::mutex> lk(mtx);
            done = true;
        }
        cv.notify_all();
        for (auto &t : helpers)
            t.join();
    }
    std::int64_t want = size * (size - 1) / 2;
    if (sum != want) {
        std::fprintf(stderr, "skynet: sum %lld, want %lld\n", (long long)sum, (long long)want);
        return 1;
    }
    std::printf("RESULT peer=bfiber variant=threads%d test=skynet size=%lld sum=%lld ms=%.1f\n", threads,
                (long long)size, (long long)sum, ms);
    return 0;
}
