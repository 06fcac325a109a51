// Command netdelay delays the packets an iptables NFQUEUE rule hands it: the chaos runs' "delay"
// fault (scripts/chaos.sh) on a kernel without sch_netem (this machine's: `tc qdisc ... netem`
// answers "Specified qdisc kind is unknown", and it has no sch_fq for an EDT delay either),
// where the xt NFQUEUE target and nfnetlink_queue are built in. Each packet of the queue is
// held for --delay and then accepted, in order, so every packet through the rule arrives
// --delay late, as netem's "delay D" makes it. Run it in the node's network namespace:
//
//	nsenter --net=/run/netns/NODE netdelay --queue 7 --delay 100ms &
//	nsenter --net=/run/netns/NODE iptables-legacy -A OUTPUT -o eth0 -j NFQUEUE --queue-num 7 --queue-bypass
//
// It ends on SIGTERM or SIGINT, accepting what it holds; with --queue-bypass in the rule,
// packets pass undelayed once it is gone. The queue is fail-open: packets past its length
// pass at once rather than being dropped.
package main

import (
	"context"
	"encoding/binary"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/mdlayher/netlink"
)

// nfnetlink_queue, as linux/netfilter/nfnetlink_queue.h numbers it.
const (
	netlinkNetfilter = 12 // NETLINK_NETFILTER
	subsysQueue      = 3  // NFNL_SUBSYS_QUEUE
	msgPacket        = 0  // NFQNL_MSG_PACKET
	msgVerdict       = 1  // NFQNL_MSG_VERDICT
	msgConfig        = 2  // NFQNL_MSG_CONFIG

	attrCfgCmd    = 1 // NFQA_CFG_CMD: {u8 command, u8 pad, be16 pf}
	attrCfgParams = 2 // NFQA_CFG_PARAMS: {be32 copy_range, u8 copy_mode}
	attrCfgMaxLen = 3 // NFQA_CFG_QUEUE_MAXLEN: be32
	attrCfgMask   = 4 // NFQA_CFG_MASK: be32
	attrCfgFlags  = 5 // NFQA_CFG_FLAGS: be32
	attrPacketHdr = 1 // NFQA_PACKET_HDR: {be32 packet_id, be16 hw_protocol, u8 hook}
	attrVerdict   = 2 // NFQA_VERDICT_HDR: {be32 verdict, be32 id}

	cmdBind     = 1 // NFQNL_CFG_CMD_BIND
	cmdUnbind   = 2 // NFQNL_CFG_CMD_UNBIND
	copyMeta    = 1 // NFQNL_COPY_META: the packet's header attributes, no payload
	flagFailOpn = 1 // NFQA_CFG_F_FAIL_OPEN
	nfAccept    = 1 // NF_ACCEPT
)

func main() {
	queue := flag.Uint("queue", 7, "the NFQUEUE number the iptables rule hands packets to")
	delay := flag.Duration("delay", 100*time.Millisecond, "how long each packet is held before it is accepted")
	maxLen := flag.Uint("max-len", 65536, "packets the kernel queues for this program before it lets them pass undelayed")
	flag.Parse()
	if *queue > 65535 || *delay < 0 || *delay > time.Minute {
		fmt.Fprintln(os.Stderr, "netdelay: --queue is 0-65535 and --delay 0-1m")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := run(ctx, uint16(*queue), *delay, uint32(*maxLen)); err != nil {
		fmt.Fprintln(os.Stderr, "netdelay:", err)
		os.Exit(1)
	}
}

type held struct {
	id  uint32
	due time.Time
}

func run(ctx context.Context, queue uint16, delay time.Duration, maxLen uint32) error {
	c, err := netlink.Dial(netlinkNetfilter, nil)
	if err != nil {
		return fmt.Errorf("open nfnetlink (needs CAP_NET_ADMIN in the node's namespace): %w", err)
	}
	defer c.Close()
	if err := configure(c, queue, attrCfgCmd, []byte{cmdBind, 0, 0, 2 /* AF_INET, ignored since 3.8 */}); err != nil {
		return fmt.Errorf("bind queue %d (another program holds it?): %w", queue, err)
	}
	// unbind on the way out without waiting for the kernel's answer: the receiving goroutine may
	// be the one to read it
	defer send(c, queue, attrCfgCmd, []byte{cmdUnbind, 0, 0, 2})
	params := make([]byte, 5)
	params[4] = copyMeta
	if err := configure(c, queue, attrCfgParams, params); err != nil {
		return fmt.Errorf("set queue %d to copy no payload: %w", queue, err)
	}
	if err := configure(c, queue, attrCfgMaxLen, binary.BigEndian.AppendUint32(nil, maxLen)); err != nil {
		return fmt.Errorf("set queue %d's length: %w", queue, err)
	}
	flags := binary.BigEndian.AppendUint32(nil, flagFailOpn)
	if err := configure2(c, queue, attrCfgFlags, flags, attrCfgMask, flags); err != nil {
		return fmt.Errorf("make queue %d fail-open: %w", queue, err)
	}

	// one goroutine receives, one accepts each packet when it is due: the delay is the same for
	// every packet, so they come due in the order they came
	pending := make(chan held, maxLen)
	errc := make(chan error, 1)
	go func() {
		for {
			msgs, err := c.Receive()
			if err != nil {
				errc <- err
				return
			}
			now := time.Now()
			for _, m := range msgs {
				if m.Header.Type != netlink.HeaderType(subsysQueue<<8|msgPacket) {
					continue
				}
				if id, ok := packetID(m.Data); ok {
					pending <- held{id, now.Add(delay)}
				}
			}
		}
	}()
	for {
		select {
		case <-ctx.Done():
			drain(c, queue, pending)
			return nil
		case err := <-errc:
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("receive from queue %d: %w", queue, err)
		case h := <-pending:
			if d := time.Until(h.due); d > 0 {
				select {
				case <-time.After(d):
				case <-ctx.Done():
					accept(c, queue, h.id)
					drain(c, queue, pending)
					return nil
				}
			}
			if err := accept(c, queue, h.id); err != nil {
				return fmt.Errorf("accept packet %d of queue %d: %w", h.id, queue, err)
			}
		}
	}
}

// drain accepts every packet still held, at once.
func drain(c *netlink.Conn, queue uint16, pending chan held) {
	for {
		select {
		case h := <-pending:
			accept(c, queue, h.id)
		default:
			return
		}
	}
}

func nfgen(queue uint16) []byte {
	return []byte{0 /* AF_UNSPEC */, 0 /* NFNETLINK_V0 */, byte(queue >> 8), byte(queue)}
}

func configure(c *netlink.Conn, queue uint16, attr uint16, val []byte) error {
	ae := netlink.NewAttributeEncoder()
	ae.Bytes(attr, val)
	return execConfig(c, queue, ae)
}

func configure2(c *netlink.Conn, queue uint16, a1 uint16, v1 []byte, a2 uint16, v2 []byte) error {
	ae := netlink.NewAttributeEncoder()
	ae.Bytes(a1, v1)
	ae.Bytes(a2, v2)
	return execConfig(c, queue, ae)
}

func execConfig(c *netlink.Conn, queue uint16, ae *netlink.AttributeEncoder) error {
	attrs, err := ae.Encode()
	if err != nil {
		return err
	}
	_, err = c.Execute(netlink.Message{
		Header: netlink.Header{Type: netlink.HeaderType(subsysQueue<<8 | msgConfig), Flags: netlink.Request | netlink.Acknowledge},
		Data:   append(nfgen(queue), attrs...),
	})
	return err
}

func accept(c *netlink.Conn, queue uint16, id uint32) error {
	v := make([]byte, 8)
	binary.BigEndian.PutUint32(v[0:4], nfAccept)
	binary.BigEndian.PutUint32(v[4:8], id)
	return sendMsg(c, queue, msgVerdict, attrVerdict, v)
}

// send is a configuration request whose answer is not waited for.
func send(c *netlink.Conn, queue uint16, attr uint16, val []byte) error {
	return sendMsg(c, queue, msgConfig, attr, val)
}

func sendMsg(c *netlink.Conn, queue uint16, msg uint16, attr uint16, val []byte) error {
	ae := netlink.NewAttributeEncoder()
	ae.Bytes(attr, val)
	attrs, err := ae.Encode()
	if err != nil {
		return err
	}
	_, err = c.Send(netlink.Message{
		Header: netlink.Header{Type: netlink.HeaderType(subsysQueue<<8 | msg), Flags: netlink.Request},
		Data:   append(nfgen(queue), attrs...),
	})
	return err
}

// packetID reads the packet id of an NFQNL_MSG_PACKET message's data (nfgenmsg, then
// attributes); ok is false for data that holds none.
func packetID(data []byte) (id uint32, ok bool) {
	if len(data) < 4 {
		return 0, false
	}
	ad, err := netlink.NewAttributeDecoder(data[4:])
	if err != nil {
		return 0, false
	}
	ad.ByteOrder = binary.BigEndian
	for ad.Next() {
		if ad.Type() == attrPacketHdr {
			b := ad.Bytes()
			if len(b) < 4 {
				return 0, false
			}
			return binary.BigEndian.Uint32(b[:4]), true
		}
	}
	return 0, false
}
