// sharedref: the shared workload of BENCHMARKS.md done with the Go etcd client (clientv3), to
// tell etcd's own cost from a client's. K clients each watch the prefix (with previous values,
// as the kvstore watch does) and write M keys of their own, one write at a time; the time is
// from the first write until every watcher has seen all K*M writes.
//
//	-lease    writes attach each client's own lease (as SharedStore's local keys do)
//	-txn      writes are transactions comparing value and lease first (Cilium's UpdateIfDifferent
//	          done atomically), instead of plain puts
//	-watch=0  no watchers: etcd's capacity for the writes alone (the limit of BENCHMARKS.md)
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"go.etcd.io/etcd/clientv3"
)

func cpuSeconds() float64 {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}

func write(c *clientv3.Client, key, value string, lease clientv3.LeaseID, txn bool) error {
	ctx := context.Background()
	if !txn {
		_, err := c.Put(ctx, key, value, clientv3.WithLease(lease))
		return err
	}
	same := []clientv3.Cmp{clientv3.Compare(clientv3.Value(key), "=", value)}
	if lease != clientv3.NoLease {
		same = append(same, clientv3.Compare(clientv3.LeaseValue(key), "=", lease))
	}
	_, err := c.Txn(ctx).If(same...).Else(clientv3.OpPut(key, value, clientv3.WithLease(lease))).Commit()
	return err
}

func main() {
	endpoints := flag.String("endpoints", "127.0.0.1:2379", "etcd endpoints, comma-separated")
	k := flag.Int("collaborators", 10, "clients")
	m := flag.Int("keys-per-collaborator", 1000, "keys each client writes")
	prefix := flag.String("prefix", "cilium/state/sharedref/v1", "")
	valueSize := flag.Int("value-size", 256, "")
	watch := flag.Bool("watch", true, "every client watches the prefix")
	lease := flag.Bool("lease", false, "attach each client's lease to its writes")
	txn := flag.Bool("txn", false, "write with a compare transaction instead of a put")
	flag.Parse()

	total := *k * *m
	value := strings.Repeat("x", *valueSize)
	ctx := context.Background()
	clients := make([]*clientv3.Client, *k)
	leases := make([]clientv3.LeaseID, *k)
	for i := range clients {
		c, err := clientv3.New(clientv3.Config{Endpoints: strings.Split(*endpoints, ","), DialTimeout: 5 * time.Second})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		clients[i] = c
		if *lease {
			g, err := c.Grant(ctx, 900)
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(1)
			}
			leases[i] = g.ID
		}
	}
	if _, err := clients[0].Delete(ctx, *prefix+"/", clientv3.WithPrefix()); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}

	var watchers sync.WaitGroup
	// The watches end before the cleanup below: a delete of every key seen by watchers that ask for
	// previous values makes etcd 3.4 look up each previous value through a read transaction, which
	// keeps it busy for minutes and slows whatever runs next.
	watchCtx, stopWatches := context.WithCancel(ctx)
	defer stopWatches()
	if *watch {
		for _, c := range clients {
			events := c.Watch(watchCtx, *prefix+"/", clientv3.WithPrefix(), clientv3.WithPrevKV(),
				clientv3.WithCreatedNotify())
			if created := <-events; !created.Created {
				fmt.Fprintln(os.Stderr, "watch not created:", created.Err())
				os.Exit(1)
			}
			watchers.Add(1)
			go func() {
				defer watchers.Done()
				seen := 0
				for resp := range events {
					for _, ev := range resp.Events {
						if ev.Type == clientv3.EventTypePut {
							seen++
						}
					}
					if seen >= total {
						return
					}
				}
			}()
		}
	}

	start, cpu0 := time.Now(), cpuSeconds()
	var writers sync.WaitGroup
	var failed error
	var failedOnce sync.Once
	for i, c := range clients {
		writers.Add(1)
		go func(i int, c *clientv3.Client) {
			defer writers.Done()
			for j := 0; j < *m; j++ {
				key := fmt.Sprintf("%s/c%03d/k%08d", *prefix, i, j)
				if err := write(c, key, value, leases[i], *txn); err != nil {
					failedOnce.Do(func() { failed = err })
					return
				}
			}
		}(i, c)
	}
	writers.Wait()
	writes := time.Since(start).Seconds()
	if failed != nil {
		fmt.Fprintln(os.Stderr, failed)
		os.Exit(1)
	}
	watchers.Wait()
	seconds := time.Since(start).Seconds()
	cpu := cpuSeconds() - cpu0
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	fmt.Printf("workload=shared-go keys=%d seconds=%.3f ops_per_s=%.0f client_cpu_s=%.3f cpu_us_per_op=%.1f maxrss_kb=%d writes_seconds=%.3f watch=%v lease=%v txn=%v\n",
		total, seconds, float64(total)/seconds, cpu, cpu*1e6/float64(total), ru.Maxrss, writes, *watch, *lease, *txn)
	// Closing the clients ends their watch streams at once; the cleanup uses a client of its own.
	stopWatches()
	for _, c := range clients {
		c.Close()
	}
	cleanup, err := clientv3.New(clientv3.Config{Endpoints: strings.Split(*endpoints, ","), DialTimeout: 5 * time.Second})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer cleanup.Close()
	if _, err := cleanup.Delete(ctx, *prefix+"/", clientv3.WithPrefix()); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	for _, id := range leases {
		if id != 0 {
			cleanup.Revoke(ctx, id)
		}
	}
}
