// Command novacron-consumer reads NovaCron's output topics in a consumer
// group, the way the migration orchestrator does: every record is checked
// against its topic's JSON Schema and decoded, redelivered records are
// dropped by id, the newest prediction per link is kept, and offsets are
// committed only for records that were handled (at-least-once).
//
//	go run . --brokers 127.0.0.1:9092 --idle-exit 10s
//
// It prints one line per record on stdout and, on exit, a JSON summary as
// the last line.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/novacron/novacron/examples/go/novacron"
	"github.com/twmb/franz-go/pkg/kgo"
)

type config struct {
	brokers  string
	group    string
	topics   map[novacron.Role]string
	schemas  string
	start    string
	maxRecs  int
	idleExit time.Duration
	seenIDs  int
	serve    string
}

func parseFlags(args []string) (config, error) {
	fs := flag.NewFlagSet("novacron-consumer", flag.ContinueOnError)
	brokers := os.Getenv("NOVACRON_KAFKA_BOOTSTRAP")
	if brokers == "" {
		brokers = "127.0.0.1:9092" // the local stack's broker (`novacron stack up`)
	}
	cfg := config{topics: map[novacron.Role]string{}}
	fs.StringVar(&cfg.brokers, "brokers", brokers, "Kafka bootstrap servers, host:port[,host:port]; $NOVACRON_KAFKA_BOOTSTRAP sets the default")
	fs.StringVar(&cfg.group, "group", "novacron-go-consumer", "consumer group id")
	topicFlags := map[novacron.Role]*string{}
	for _, role := range novacron.Roles {
		topicFlags[role] = fs.String(string(role)+"-topic", novacron.SchemaName(role), "topic of "+string(role)+" records (\"\" to skip it)")
	}
	fs.StringVar(&cfg.schemas, "schemas", "../../schemas", "folder of NovaCron's JSON Schemas (<topic schema>.json)")
	fs.StringVar(&cfg.start, "start", "earliest", "where a group without committed offsets starts: earliest or latest")
	fs.IntVar(&cfg.maxRecs, "max-records", 0, "exit after handling this many records (0: no limit)")
	fs.DurationVar(&cfg.idleExit, "idle-exit", 0, "exit when no record arrived for this long (0: never)")
	fs.IntVar(&cfg.seenIDs, "seen-ids", 100_000, "record ids remembered per topic to drop redeliveries")
	fs.StringVar(&cfg.serve, "serve", "", "serve /predictions and /summary as JSON on this address, e.g. :8085")
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	for role, topic := range topicFlags {
		cfg.topics[role] = *topic
	}
	if cfg.start != "earliest" && cfg.start != "latest" {
		return cfg, fmt.Errorf("--start must be one of {earliest, latest}, got %q", cfg.start)
	}
	return cfg, nil
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	logger := slog.New(slog.NewTextHandler(stderr, nil))
	cfg, err := parseFlags(args)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		logger.Error("bad flags", "error", err)
		return 2
	}
	contract, err := novacron.LoadContract(cfg.schemas)
	if err != nil {
		logger.Error("cannot load the schemas (--schemas)", "dir", cfg.schemas, "error", err)
		return 2
	}
	view := novacron.NewView(contract, cfg.seenIDs)
	roles := map[string]novacron.Role{}
	var topics []string
	for _, role := range novacron.Roles {
		if topic := cfg.topics[role]; topic != "" {
			if other, taken := roles[topic]; taken {
				logger.Error("one topic given for two roles", "topic", topic, "roles", []novacron.Role{other, role})
				return 2
			}
			roles[topic] = role
			topics = append(topics, topic)
			view.Track(topic, role)
		}
	}
	if len(topics) == 0 {
		logger.Error("no topic to read: every --*-topic is empty")
		return 2
	}

	start := kgo.NewOffset().AtStart()
	if cfg.start == "latest" {
		start = kgo.NewOffset().AtEnd()
	}
	var lastActivity atomic.Int64
	lastActivity.Store(time.Now().UnixNano())
	client, err := kgo.NewClient(
		kgo.SeedBrokers(strings.Split(cfg.brokers, ",")...),
		kgo.ConsumerGroup(cfg.group),
		kgo.ConsumeTopics(topics...),
		kgo.ConsumeResetOffset(start),
		// A fetch waits this long for new records before the broker answers
		// empty. Partitions whose start offset is still being looked up join
		// the next fetch only, so the default (5 s) could hold them back
		// longer than --idle-exit; records still come as soon as they exist.
		kgo.FetchMaxWait(500*time.Millisecond),
		// Commit only what was marked, and mark a record once it is handled:
		// a crash re-reads what was not handled, never skips it.
		kgo.AutoCommitMarks(),
		// No rebalance while a poll's records are being handled, so a
		// partition is not revoked between handling a record and marking it.
		kgo.BlockRebalanceOnPoll(),
		kgo.OnPartitionsAssigned(func(_ context.Context, _ *kgo.Client, assigned map[string][]int32) {
			// Waiting to join the group is not idleness.
			lastActivity.Store(time.Now().UnixNano())
			logger.Info("partitions assigned", "partitions", assigned)
		}),
	)
	if err != nil {
		logger.Error("cannot create the Kafka client", "error", err)
		return 2
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if cfg.serve != "" {
		srv := serveView(cfg.serve, view, logger)
		defer func() { _ = srv.Shutdown(context.Background()) }()
	}

	out := bufio.NewWriter(stdout)
	why := consume(ctx, client, view, roles, cfg, out, logger, &lastActivity)

	commitCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	if err := client.CommitMarkedOffsets(commitCtx); err != nil {
		logger.Error("final commit failed; the records since the last commit will be read again", "error", err)
	}
	cancel()
	client.CloseAllowingRebalance()

	summary := struct {
		Exit string `json:"exit"`
		novacron.Summary
	}{why, view.Summary()}
	line, err := json.Marshal(summary)
	if err != nil {
		logger.Error("cannot write the summary", "error", err)
		return 1
	}
	fmt.Fprintln(out, string(line))
	if err := out.Flush(); err != nil {
		return 1
	}
	return 0
}

// consume handles records until a signal, --max-records or --idle-exit, and
// says which.
func consume(
	ctx context.Context,
	client *kgo.Client,
	view *novacron.View,
	roles map[string]novacron.Role,
	cfg config,
	out *bufio.Writer,
	logger *slog.Logger,
	lastActivity *atomic.Int64,
) string {
	handled := 0
	for {
		if ctx.Err() != nil {
			return "signal"
		}
		wait := time.Second
		if cfg.idleExit > 0 {
			idle := time.Since(time.Unix(0, lastActivity.Load()))
			if idle >= cfg.idleExit {
				return "idle"
			}
			wait = min(wait, cfg.idleExit-idle)
		}
		pollCtx, cancel := context.WithTimeout(ctx, wait)
		fetches := client.PollRecords(pollCtx, 1000)
		cancel()
		if fetches.IsClientClosed() {
			return "closed"
		}
		fetches.EachError(func(topic string, partition int32, err error) {
			if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
				logger.Warn("fetch failed", "topic", topic, "partition", partition, "error", err)
			}
		})
		reachedMax := false
		for iter := fetches.RecordIter(); !iter.Done(); {
			record := iter.Next()
			handle(view, roles[record.Topic], record, out, logger)
			client.MarkCommitRecords(record)
			lastActivity.Store(time.Now().UnixNano())
			handled++
			if cfg.maxRecs > 0 && handled >= cfg.maxRecs {
				reachedMax = true
				break
			}
		}
		if err := out.Flush(); err != nil {
			logger.Error("cannot write to stdout", "error", err)
		}
		client.AllowRebalance()
		if reachedMax {
			return "max-records"
		}
	}
}

// handle applies one record and prints its line. A refused record is
// logged with the reason and counted; it does not stop the consumer.
func handle(view *novacron.View, role novacron.Role, r *kgo.Record, out io.Writer, logger *slog.Logger) {
	o := view.Handle(r.Topic, role, r.Value)
	line := []novacron.Field{
		{Key: "topic", Value: r.Topic},
		{Key: "partition", Value: strconv.Itoa(int(r.Partition))},
		{Key: "offset", Value: strconv.FormatInt(r.Offset, 10)},
		{Key: "outcome", Value: o.Status},
	}
	if o.Refused != nil {
		line = append(line, novacron.Field{Key: "error", Value: o.Refused.Kind},
			novacron.Field{Key: "reason", Value: o.Refused.Reason})
		logger.Warn("record refused", "topic", r.Topic, "partition", r.Partition,
			"offset", r.Offset, "key", string(r.Key), "error", o.Refused.Kind, "reason", o.Refused.Reason)
	} else {
		line = append(line, o.Record.Line()...)
		if o.Stale {
			line = append(line, novacron.Field{Key: "stale", Value: "true"})
		}
	}
	fmt.Fprintln(out, novacron.FormatLine(line))
}

func serveView(addr string, view *novacron.View, logger *slog.Logger) *http.Server {
	mux := http.NewServeMux()
	writeJSON := func(w http.ResponseWriter, v any) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(v)
	}
	mux.HandleFunc("GET /predictions", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, view.Latest())
	})
	mux.HandleFunc("GET /summary", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, view.Summary())
	})
	srv := &http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Error("cannot serve", "addr", addr, "error", err)
		}
	}()
	return srv
}
