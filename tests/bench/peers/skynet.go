// skynet.go - the classic skynet benchmark (github.com/atemerev/skynet):
// SIZE leaf goroutines in a tree of 10 children per node; every leaf sends
// its id to its parent over an unbuffered channel and every node sends the
// sum of its children. Run with GOMAXPROCS=1 and 2.
//
// usage: skynet [SIZE, default 1000000]
// prints: RESULT peer=go variant=gomaxprocsN test=skynet size=.. sum=.. ms=..
package main

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"time"
)

func skynet(c chan int64, num, size, div int64) {
	if size == 1 {
		c <- num
		return
	}
	rc := make(chan int64)
	var sum int64
	for i := int64(0); i < div; i++ {
		go skynet(rc, num+i*(size/div), size/div, div)
	}
	for i := int64(0); i < div; i++ {
		sum += <-rc
	}
	c <- sum
}

func main() {
	size := int64(1000000)
	if len(os.Args) > 1 {
		size, _ = strconv.ParseInt(os.Args[1], 10, 64)
	}
	c := make(chan int64)
	t0 := time.Now()
	go skynet(c, 0, size, 10)
	sum := <-c
	el := time.Since(t0)
	want := size * (size - 1) / 2
	if sum != want {
		fmt.Fprintf(os.Stderr, "skynet: sum %d, want %d\n", sum, want)
		os.Exit(1)
	}
	fmt.Printf("RESULT peer=go variant=gomaxprocs%d test=skynet size=%d sum=%d ms=%.1f\n",
		runtime.GOMAXPROCS(0), size, sum, float64(el.Nanoseconds())/1e6)
}
