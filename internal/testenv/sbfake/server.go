package sbfake

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/Azure/go-amqp"
)

// Performative and section descriptor codes (AMQP 1.0).
const (
	codeOpen        = 0x10
	codeBegin       = 0x11
	codeAttach      = 0x12
	codeFlow        = 0x13
	codeTransfer    = 0x14
	codeDisposition = 0x15
	codeDetach      = 0x16
	codeEnd         = 0x17
	codeClose       = 0x18
	codeError       = 0x1d
	codeAccepted    = 0x24
	codeRejected    = 0x25
	codeReleased    = 0x26
	codeModified    = 0x27
	codeSource      = 0x28
	codeTarget      = 0x29

	codeSASLMechanisms = 0x40
	codeSASLInit       = 0x41
	codeSASLOutcome    = 0x44

	// batchFormat is the message format of a Service Bus batch: one Data
	// section per encoded inner message.
	batchFormat = 0x80013700
)

var (
	saslHeader = []byte("AMQP\x03\x01\x00\x00")
	amqpHeader = []byte("AMQP\x00\x01\x00\x00")
)

// Defaults of a Server.
const (
	// DefaultMaxMessageSize is the max-message-size a Server announces on
	// sender links: 256 KiB, as on the Standard tier.
	DefaultMaxMessageSize = 256 * 1024
	// DefaultMaxFrameSize is the largest frame the Server accepts; larger
	// transfers are split by the client.
	DefaultMaxFrameSize = 64 * 1024
	// DefaultHeartbeat is how often the Server sends an empty frame.
	DefaultHeartbeat = 15 * time.Second
)

// Option configures a Server.
type Option func(*Server)

// WithMaxMessageSize sets the max-message-size announced on sender links.
func WithMaxMessageSize(n int) Option { return func(s *Server) { s.maxMessage = uint64(n) } }

// WithMaxFrameSize sets the largest frame the Server accepts (at least 512).
func WithMaxFrameSize(n int) Option { return func(s *Server) { s.maxFrame = uint32(max(n, 512)) } }

// WithHeartbeat sets how often the Server sends an empty frame on every
// connection.
func WithHeartbeat(d time.Duration) Option { return func(s *Server) { s.heartbeat = d } }

// Server is a fake Service Bus namespace: an AMQP 1.0 server on
// 127.0.0.1 with topics and their subscriptions.
type Server struct {
	ln         net.Listener
	maxMessage uint64
	maxFrame   uint32
	heartbeat  time.Duration

	mu          sync.Mutex
	topics      map[string]*topic
	conns       map[*conn]struct{}
	refuseUntil time.Time
	closed      bool
	accepted    int
	seq         int64
	created     time.Time // when the newest subscription was made
	admin       *adminTransport

	wg sync.WaitGroup
}

type topic struct {
	name string
	subs map[string]*subscription
}

type subscription struct {
	path      string
	queue     []*stored
	receivers []*link
	rr        int
	locked    map[[16]byte]*lockedMsg
	// created identifies this subscription among those ever made under
	// its name: every subscription's is later than the one before.
	created time.Time
	// deadLettered counts the messages rejected by a receiver (Service Bus
	// moves them to the dead-letter queue; the fake drops them).
	deadLettered int
}

// stored is a message waiting in a subscription.
type stored struct {
	msg           *amqp.Message
	seq           int64
	enqueued      time.Time
	deliveryCount uint32
}

type lockedMsg struct {
	m    *stored
	link *link
}

// Start starts a Server on 127.0.0.1:0.
func Start(opts ...Option) (*Server, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &Server{
		ln:         ln,
		maxMessage: DefaultMaxMessageSize,
		maxFrame:   DefaultMaxFrameSize,
		heartbeat:  DefaultHeartbeat,
		topics:     make(map[string]*topic),
		conns:      make(map[*conn]struct{}),
	}
	for _, o := range opts {
		o(s)
	}
	s.wg.Add(1)
	go s.accept()
	return s, nil
}

// Addr is the server's host:port.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// ConnectionString is a Service Bus connection string for the SDK that
// dials this server over plain AMQP (UseDevelopmentEmulator=true). The key
// is ignored: the server answers every put-token with success.
func (s *Server) ConnectionString() string {
	return "Endpoint=sb://" + s.Addr() + ";SharedAccessKeyName=fake;SharedAccessKey=fake;UseDevelopmentEmulator=true"
}

// AddTopic creates topic name (if needed) with the given subscriptions.
func (s *Server) AddTopic(name string, subs ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.topics[strings.ToLower(name)]
	if t == nil {
		t = &topic{name: name, subs: make(map[string]*subscription)}
		s.topics[strings.ToLower(name)] = t
	}
	for _, sub := range subs {
		if t.subs[strings.ToLower(sub)] == nil {
			t.subs[strings.ToLower(sub)] = &subscription{
				path:    name + "/Subscriptions/" + sub,
				locked:  make(map[[16]byte]*lockedMsg),
				created: s.nextCreated(),
			}
		}
	}
}

// nextCreated is the creation time of a new subscription: now, or just
// after the previous one, so that a subscription made again under the same
// name never looks like the one before. Called with s.mu held.
func (s *Server) nextCreated() time.Time {
	now := time.Now().UTC()
	if !now.After(s.created) {
		now = s.created.Add(time.Microsecond)
	}
	s.created = now
	return now
}

// RemoveSubscription deletes a subscription and its messages; links
// attached to it are detached with amqp:not-found.
func (s *Server) RemoveSubscription(topicName, sub string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.topics[strings.ToLower(topicName)]
	if t == nil {
		return
	}
	sb := t.subs[strings.ToLower(sub)]
	if sb == nil {
		return
	}
	delete(t.subs, strings.ToLower(sub))
	for _, l := range sb.receivers {
		l.sub = nil
		l.sess.c.send(l.sess.ch, list{l.handle, true, errorValue("amqp:not-found", "subscription deleted")}, codeDetach, nil)
	}
	sb.receivers = nil
}

// removeTopic deletes a topic with its subscriptions.
func (s *Server) removeTopic(name string) bool {
	s.mu.Lock()
	t := s.topics[strings.ToLower(name)]
	s.mu.Unlock()
	if t == nil {
		return false
	}
	var subs []string
	s.mu.Lock()
	for k := range t.subs {
		subs = append(subs, k)
	}
	s.mu.Unlock()
	for _, sub := range subs {
		s.RemoveSubscription(name, sub)
	}
	s.mu.Lock()
	delete(s.topics, strings.ToLower(name))
	s.mu.Unlock()
	return true
}

// Pending reports how many messages wait in a subscription, locked ones
// included; -1 when it does not exist.
func (s *Server) Pending(topicName, sub string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.topics[strings.ToLower(topicName)]
	if t == nil || t.subs[strings.ToLower(sub)] == nil {
		return -1
	}
	sb := t.subs[strings.ToLower(sub)]
	return len(sb.queue) + len(sb.locked)
}

// DeadLetter moves up to n of the messages waiting in a subscription (not
// locked ones) to its dead-letter queue, as Service Bus does with a message
// past its MaxDeliveryCount or, with dead-lettering on expiration, its time
// to live. The fake drops them and counts them. It returns how many it
// moved.
func (s *Server) DeadLetter(topicName, sub string, n int) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	sb := s.lookupSub(topicName + "/Subscriptions/" + sub)
	if sb == nil {
		return 0
	}
	n = min(n, len(sb.queue))
	sb.queue = sb.queue[n:]
	sb.deadLettered += n
	return n
}

// Connections reports the number of open connections.
func (s *Server) Connections() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// Accepted reports how many connections completed the AMQP handshake so far.
func (s *Server) Accepted() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.accepted
}

// DropAll closes every connection abruptly, as a network failure does.
// It returns how many were closed.
func (s *Server) DropAll() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for c := range s.conns {
		c.nc.Close()
		n++
	}
	return n
}

// DropEntity closes every connection that has a link to entity (a topic
// name or a "<topic>/Subscriptions/<name>" path), abruptly. It returns how
// many were closed.
func (s *Server) DropEntity(entity string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	entity = strings.ToLower(entity)
	n := 0
	for c := range s.conns {
		hit := false
		for _, se := range c.sessions {
			for _, l := range se.links {
				if strings.ToLower(l.address) == entity {
					hit = true
				}
			}
		}
		if hit {
			c.nc.Close()
			n++
		}
	}
	return n
}

// Refuse makes the server close every new connection right after accepting
// it, for d.
func (s *Server) Refuse(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.refuseUntil = time.Now().Add(d)
}

// Close stops the server, closes every connection and waits for its
// goroutines. It is idempotent.
func (s *Server) Close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	for c := range s.conns {
		c.nc.Close()
	}
	s.mu.Unlock()
	s.ln.Close()
	s.wg.Wait()
}

func (s *Server) accept() {
	defer s.wg.Done()
	for {
		nc, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		if s.closed || time.Now().Before(s.refuseUntil) {
			s.mu.Unlock()
			nc.Close()
			continue
		}
		c := &conn{s: s, nc: nc, sessions: make(map[uint16]*session), wake: make(chan struct{}, 1), done: make(chan struct{})}
		s.conns[c] = struct{}{}
		s.mu.Unlock()
		s.wg.Add(2)
		go c.writeLoop()
		go c.readLoop()
	}
}

// conn is one client connection.
type conn struct {
	s  *Server
	nc net.Conn

	outMu sync.Mutex
	out   [][]byte
	wake  chan struct{}
	done  chan struct{}

	// Guarded by s.mu.
	sessions map[uint16]*session
	maxFrame uint32
}

type session struct {
	c              *conn
	ch             uint16
	nextIncomingID uint32
	nextOutgoingID uint32
	nextDelivery   uint32
	links          map[uint32]*link
	unsettled      map[uint32]*lockedMsg
}

type linkKind int

const (
	kindTopicSender linkKind = iota + 1 // client sends to a topic
	kindSubReceiver                     // client receives from a subscription
	kindRPCSender                       // client sends requests ($cbs, $management)
	kindRPCReceiver                     // client receives replies
)

type link struct {
	sess    *session
	name    string
	handle  uint32
	kind    linkKind
	address string // entity address (target of senders, source of receivers)
	reply   string // target address of an RPC receiver
	sub     *subscription
	entity  string // entity of a $management link

	// Client sender: credit we gave.
	rcvCount  uint32
	rcvCredit uint32
	partial   []byte
	partialID uint32
	settled   bool
	format    uint32

	// Client receiver: credit it gave us.
	deliveryCount uint32
	credit        uint32
	preSettled    bool // snd-settle-mode settled: ReceiveAndDelete
	outq          []*amqp.Message
}

// send queues a frame: performative code with fields, then payload.
func (c *conn) send(ch uint16, fields list, code uint64, payload []byte) {
	var body bytes.Buffer
	encode(&body, described{desc: code, value: fields})
	body.Write(payload)
	c.sendRaw(0, ch, body.Bytes())
}

// frame is body as a frame of type typ on channel ch.
func frame(typ byte, ch uint16, body []byte) []byte {
	fr := make([]byte, 8, 8+len(body))
	binary.BigEndian.PutUint32(fr, uint32(8+len(body)))
	fr[4] = 2
	fr[5] = typ
	binary.BigEndian.PutUint16(fr[6:], ch)
	return append(fr, body...)
}

func (c *conn) sendRaw(typ byte, ch uint16, body []byte) {
	fr := frame(typ, ch, body)
	c.outMu.Lock()
	c.out = append(c.out, fr)
	c.outMu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// takeOut empties the queue of frames and returns what it held.
func (c *conn) takeOut() [][]byte {
	c.outMu.Lock()
	defer c.outMu.Unlock()
	out := c.out
	c.out = nil
	return out
}

func (c *conn) writeLoop() {
	defer c.s.wg.Done()
	tick := time.NewTicker(c.s.heartbeat)
	defer tick.Stop()
	for {
		select {
		case <-c.done:
			return
		case <-tick.C:
			c.sendRaw(0, 0, nil)
		case <-c.wake:
		}
		for _, fr := range c.takeOut() {
			if _, err := c.nc.Write(fr); err != nil {
				c.nc.Close()
				return
			}
		}
	}
}

func (c *conn) readLoop() {
	defer c.s.wg.Done()
	defer c.teardown()
	if err := c.handshake(); err != nil {
		return
	}
	for {
		typ, ch, body, err := c.readFrame()
		if err != nil {
			return
		}
		if typ != 0 || len(body) == 0 {
			continue // heartbeat
		}
		v, rest, err := decode(body)
		if err != nil {
			return
		}
		code, fields, ok := performative(v)
		if !ok {
			return
		}
		if code == codeClose {
			c.send(0, list{}, codeClose, nil)
			c.flushAndClose()
			return
		}
		c.s.mu.Lock()
		c.handle(ch, code, fields, rest)
		c.s.mu.Unlock()
	}
}

// flushAndClose writes what is queued, then closes the connection.
func (c *conn) flushAndClose() {
	for _, fr := range c.takeOut() {
		if _, err := c.nc.Write(fr); err != nil {
			break
		}
	}
	c.nc.Close()
}

func (c *conn) teardown() {
	c.nc.Close()
	close(c.done)
	c.s.mu.Lock()
	defer c.s.mu.Unlock()
	for _, se := range c.sessions {
		se.endLocked()
	}
	delete(c.s.conns, c)
}

func (c *conn) readFrame() (typ byte, ch uint16, body []byte, err error) {
	var hdr [8]byte
	if _, err = io.ReadFull(c.nc, hdr[:]); err != nil {
		return
	}
	size := binary.BigEndian.Uint32(hdr[:])
	doff := int(hdr[4]) * 4
	if size < 8 || doff < 8 || int(size) < doff {
		return 0, 0, nil, fmt.Errorf("sbfake: bad frame header % x", hdr)
	}
	if size > c.s.maxFrame {
		// A peer must not exceed the max-frame-size announced to it.
		return 0, 0, nil, fmt.Errorf("sbfake: frame of %d bytes exceeds max-frame-size %d", size, c.s.maxFrame)
	}
	buf := make([]byte, size-8)
	if _, err = io.ReadFull(c.nc, buf); err != nil {
		return
	}
	return hdr[5], binary.BigEndian.Uint16(hdr[6:]), buf[doff-8:], nil
}

func (c *conn) handshake() error {
	var hdr [8]byte
	if _, err := io.ReadFull(c.nc, hdr[:]); err != nil {
		return err
	}
	if bytes.Equal(hdr[:], saslHeader) {
		if _, err := c.nc.Write(saslHeader); err != nil {
			return err
		}
		var b bytes.Buffer
		encode(&b, described{desc: uint64(codeSASLMechanisms), value: list{symArray{"ANONYMOUS", "MSSBCBS"}}})
		if err := c.writeDirect(1, b.Bytes()); err != nil {
			return err
		}
		if _, err := c.expect(1, codeSASLInit, "sasl-init"); err != nil {
			return err
		}
		b.Reset()
		encode(&b, described{desc: uint64(codeSASLOutcome), value: list{uint8(0)}})
		if err := c.writeDirect(1, b.Bytes()); err != nil {
			return err
		}
		if _, err := io.ReadFull(c.nc, hdr[:]); err != nil {
			return err
		}
	}
	if !bytes.Equal(hdr[:], amqpHeader) {
		return fmt.Errorf("sbfake: unexpected protocol header % x", hdr)
	}
	if _, err := c.nc.Write(amqpHeader); err != nil {
		return err
	}
	fields, err := c.expect(0, codeOpen, "open")
	if err != nil {
		return err
	}
	mf := uint32(DefaultMaxFrameSize)
	if n, ok := asUint(field(fields, 2)); ok && n >= 512 {
		mf = uint32(min(n, uint64(1<<31)))
	}
	c.s.mu.Lock()
	c.maxFrame = min(mf, c.s.maxFrame)
	c.s.accepted++
	c.s.mu.Unlock()
	c.send(0, list{"sbfake", nil, c.s.maxFrame, uint16(65535), uint32(120000)}, codeOpen, nil)
	return nil
}

// expect reads one frame and returns its fields when it is of type typ and
// holds performative code; otherwise an error naming what was expected.
func (c *conn) expect(typ byte, code uint64, name string) (list, error) {
	t, _, body, err := c.readFrame()
	if err != nil {
		return nil, err
	}
	v, _, err := decode(body)
	if err != nil {
		return nil, err
	}
	got, fields, ok := performative(v)
	if t != typ || !ok || got != code {
		return nil, errors.New("sbfake: expected " + name)
	}
	return fields, nil
}

func (c *conn) writeDirect(typ byte, body []byte) error {
	_, err := c.nc.Write(frame(typ, 0, body))
	return err
}

// errorValue is an AMQP error.
func errorValue(condition, description string) described {
	return described{desc: uint64(codeError), value: list{symbol(condition), description}}
}

const bigWindow = uint32(1 << 30)

// handle processes one performative; s.mu is held.
func (c *conn) handle(ch uint16, code uint64, f list, payload []byte) {
	if code == codeBegin {
		se := &session{c: c, ch: ch, links: make(map[uint32]*link), unsettled: make(map[uint32]*lockedMsg)}
		if n, ok := asUint(field(f, 1)); ok {
			se.nextIncomingID = uint32(n)
		}
		c.sessions[ch] = se
		handleMax := any(uint32(1<<32 - 1))
		if n, ok := asUint(field(f, 4)); ok {
			handleMax = uint32(n)
		}
		c.send(ch, list{ch, uint32(0), bigWindow, bigWindow, handleMax}, codeBegin, nil)
		return
	}
	se := c.sessions[ch]
	if se == nil {
		return
	}
	switch code {
	case codeEnd:
		se.endLocked()
		delete(c.sessions, ch)
		c.send(ch, list{}, codeEnd, nil)
	case codeAttach:
		se.attach(f)
	case codeDetach:
		h, _ := asUint(field(f, 0))
		if l := se.links[uint32(h)]; l != nil {
			l.detachLocked()
			delete(se.links, uint32(h))
		}
		c.send(ch, list{uint32(h), true}, codeDetach, nil)
	case codeFlow:
		se.flow(f)
	case codeTransfer:
		se.transfer(f, payload)
	case codeDisposition:
		se.disposition(f)
	}
}

// endLocked detaches every link of the session.
func (se *session) endLocked() {
	for _, l := range se.links {
		l.detachLocked()
	}
	se.links = map[uint32]*link{}
	se.unsettled = map[uint32]*lockedMsg{}
}

// detachLocked removes a link from its subscription and puts the messages
// it had locked back in the queue (the fake does not wait for lock expiry).
func (l *link) detachLocked() {
	sub := l.sub
	if sub == nil {
		return
	}
	l.sub = nil
	for i, r := range sub.receivers {
		if r == l {
			sub.receivers = append(sub.receivers[:i], sub.receivers[i+1:]...)
			break
		}
	}
	var back []*stored
	for tok, lm := range sub.locked {
		if lm.link == l {
			delete(sub.locked, tok)
			back = append(back, lm.m)
		}
	}
	if len(back) > 0 {
		for _, m := range back {
			sub.requeue(m)
		}
		l.sess.c.s.dispatch(sub)
	}
}

func terminusAddress(v any) (string, list) {
	d, ok := v.(described)
	if !ok {
		return "", nil
	}
	l, _ := d.value.(list)
	return asString(field(l, 0)), l
}

// entityPath strips a scheme and host from an address.
func entityPath(addr string) string {
	if i := strings.Index(addr, "://"); i >= 0 {
		rest := addr[i+3:]
		if j := strings.IndexByte(rest, '/'); j >= 0 {
			return rest[j+1:]
		}
		return ""
	}
	return addr
}

// rpcNode reports whether l's address is $cbs or an entity's $management
// node; if so it makes l of kind, and sets *notFound when the entity of a
// $management node does not exist.
func (l *link) rpcNode(kind linkKind, notFound *string) bool {
	switch {
	case l.address == "$cbs":
	case strings.HasSuffix(strings.ToLower(l.address), "/$management"):
		l.entity = strings.TrimSuffix(l.address[:len(l.address)-len("/$management")], "/")
		if !l.sess.c.s.entityExists(l.entity) {
			*notFound = l.entity
		}
	default:
		return false
	}
	l.kind = kind
	return true
}

func (se *session) attach(f list) {
	c := se.c
	s := c.s
	name := asString(field(f, 0))
	h, _ := asUint(field(f, 1))
	clientIsReceiver := asBool(field(f, 2))
	sndMode, _ := asUint(field(f, 3))
	rcvMode, _ := asUint(field(f, 4))
	srcAddr, _ := terminusAddress(field(f, 5))
	tgtAddr, _ := terminusAddress(field(f, 6))
	l := &link{sess: se, name: name, handle: uint32(h)}

	var notFound string
	if clientIsReceiver {
		l.address = entityPath(srcAddr)
		l.reply = tgtAddr
		l.preSettled = sndMode == 1
		if !l.rpcNode(kindRPCReceiver, &notFound) {
			l.kind = kindSubReceiver
			l.sub = s.lookupSub(l.address)
			if l.sub == nil {
				notFound = l.address
			}
		}
	} else {
		l.address = entityPath(tgtAddr)
		if !l.rpcNode(kindRPCSender, &notFound) {
			l.kind = kindTopicSender
			if s.topics[strings.ToLower(l.address)] == nil {
				notFound = l.address
			}
		}
	}

	source := any(described{desc: uint64(codeSource), value: list{srcAddr}})
	target := any(described{desc: uint64(codeTarget), value: list{tgtAddr}})
	if notFound != "" {
		if clientIsReceiver {
			source = nil
		} else {
			target = nil
		}
	}
	reply := list{name, uint32(h), !clientIsReceiver, uint8(sndMode), uint8(rcvMode), source, target, nil, false}
	if clientIsReceiver {
		reply = append(reply, uint32(0)) // initial-delivery-count
	} else {
		reply = append(reply, nil)
	}
	reply = append(reply, s.maxMessage)
	c.send(se.ch, reply, codeAttach, nil)
	if notFound != "" {
		c.send(se.ch, list{uint32(h), true, errorValue("amqp:not-found",
			fmt.Sprintf("The messaging entity '%s' could not be found.", notFound))}, codeDetach, nil)
		return
	}
	se.links[uint32(h)] = l
	if l.sub != nil {
		l.sub.receivers = append(l.sub.receivers, l)
	}
	if !clientIsReceiver {
		if n, ok := asUint(field(f, 9)); ok {
			l.rcvCount = uint32(n)
		}
		l.rcvCredit = 1000
		se.sendFlow(l)
	}
}

// sendFlow sends the link's flow state.
func (se *session) sendFlow(l *link) {
	var count, credit uint32
	if l.kind == kindTopicSender || l.kind == kindRPCSender {
		count, credit = l.rcvCount, l.rcvCredit
	} else {
		count, credit = l.deliveryCount, l.credit
	}
	se.c.send(se.ch, list{se.nextIncomingID, bigWindow, se.nextOutgoingID, bigWindow, l.handle, count, credit}, codeFlow, nil)
}

func (se *session) flow(f list) {
	h, ok := asUint(field(f, 4))
	if !ok {
		return
	}
	l := se.links[uint32(h)]
	if l == nil {
		return
	}
	echo := asBool(field(f, 9))
	if l.kind == kindSubReceiver || l.kind == kindRPCReceiver {
		credit, _ := asUint(field(f, 6))
		count := l.deliveryCount
		if n, ok := asUint(field(f, 5)); ok {
			count = uint32(n)
		}
		// credit is relative to the receiver's view of the delivery count.
		l.credit = count + uint32(credit) - l.deliveryCount
		if int32(l.credit) < 0 {
			l.credit = 0
		}
		se.flushRPC(l)
		if l.sub != nil {
			se.c.s.dispatch(l.sub)
		}
		if asBool(field(f, 8)) { // drain
			l.deliveryCount += l.credit
			l.credit = 0
			se.c.send(se.ch, list{se.nextIncomingID, bigWindow, se.nextOutgoingID, bigWindow, l.handle, l.deliveryCount, uint32(0), nil, true}, codeFlow, nil)
			return
		}
	}
	if echo {
		se.sendFlow(l)
	}
}

func (se *session) transfer(f list, payload []byte) {
	se.nextIncomingID++
	h, _ := asUint(field(f, 0))
	l := se.links[uint32(h)]
	if l == nil || (l.kind != kindTopicSender && l.kind != kindRPCSender) {
		return
	}
	if l.partial == nil {
		id, _ := asUint(field(f, 1))
		l.partialID = uint32(id)
		format, _ := asUint(field(f, 3))
		l.format = uint32(format)
		l.settled = asBool(field(f, 4))
		l.partial = []byte{}
	}
	if asBool(field(f, 9)) { // aborted
		l.partial = nil
		return
	}
	l.partial = append(l.partial, payload...)
	if asBool(field(f, 5)) { // more
		return
	}
	data, id, settled, format := l.partial, l.partialID, l.settled, l.format
	l.partial = nil
	l.rcvCount++
	l.rcvCredit--
	if l.rcvCredit < 500 {
		l.rcvCredit = 1000
		se.sendFlow(l)
	}

	var state any = described{desc: uint64(codeAccepted), value: list{}}
	switch l.kind {
	case kindTopicSender:
		if err := se.c.s.publish(l.address, format, data); err != nil {
			state = described{desc: uint64(codeRejected), value: list{errorValue("amqp:decode-error", err.Error())}}
		}
	case kindRPCSender:
		se.rpc(l, data)
	}
	if !settled {
		se.c.send(se.ch, list{true, id, nil, true, state}, codeDisposition, nil)
	}
}

// disposition handles the client's settlement of our deliveries.
func (se *session) disposition(f list) {
	if !asBool(field(f, 0)) { // role sender: the client settles its own transfers; ignore
		return
	}
	first, _ := asUint(field(f, 1))
	last := first
	if n, ok := asUint(field(f, 2)); ok {
		last = n
	}
	settled := asBool(field(f, 3))
	code, _, _ := performative(field(f, 4))
	for id := uint32(first); ; id++ {
		if lm := se.unsettled[id]; lm != nil {
			delete(se.unsettled, id)
			se.c.s.settle(lm, code)
		}
		if id == uint32(last) {
			break
		}
	}
	if !settled {
		se.c.send(se.ch, list{false, uint32(first), uint32(last), true, field(f, 4)}, codeDisposition, nil)
	}
}

// settle applies an outcome to a locked message.
func (s *Server) settle(lm *lockedMsg, code uint64) {
	link := lm.link
	sub := link.sub
	if sub == nil {
		return // the link went away; the message was put back already
	}
	var tok [16]byte
	found := false
	for t, x := range sub.locked {
		if x == lm {
			tok, found = t, true
		}
	}
	if !found {
		return
	}
	s.outcome(sub, tok, code)
}

// outcome applies a settlement outcome to the message locked under tok.
func (s *Server) outcome(sub *subscription, tok [16]byte, code uint64) bool {
	lm := sub.locked[tok]
	if lm == nil {
		return false
	}
	delete(sub.locked, tok)
	switch code {
	case codeReleased:
		sub.requeue(lm.m)
	case codeModified:
		lm.m.deliveryCount++
		sub.requeue(lm.m)
	case codeRejected: // dead-lettered, which the fake drops
		sub.deadLettered++
	default: // accepted: done
	}
	s.dispatch(sub)
	return true
}

// requeue puts a message back in the queue at its place by sequence
// number, as Service Bus makes an unlocked message available again.
func (sub *subscription) requeue(m *stored) {
	i := sort.Search(len(sub.queue), func(i int) bool { return sub.queue[i].seq > m.seq })
	sub.queue = slices.Insert(sub.queue, i, m)
}

func (s *Server) entityExists(entity string) bool {
	if s.topics[strings.ToLower(entity)] != nil {
		return true
	}
	return s.lookupSub(entity) != nil
}

func (s *Server) lookupSub(path string) *subscription {
	parts := strings.Split(path, "/")
	if len(parts) != 3 || !strings.EqualFold(parts[1], "subscriptions") {
		return nil
	}
	t := s.topics[strings.ToLower(parts[0])]
	if t == nil {
		return nil
	}
	return t.subs[strings.ToLower(parts[2])]
}

// publish fans a transfer to a topic out to its subscriptions.
func (s *Server) publish(topicName string, format uint32, data []byte) error {
	t := s.topics[strings.ToLower(topicName)]
	if t == nil {
		return fmt.Errorf("no topic %q", topicName)
	}
	var outer amqp.Message
	if err := outer.UnmarshalBinary(data); err != nil {
		return err
	}
	msgs := []*amqp.Message{&outer}
	if format == batchFormat {
		msgs = msgs[:0]
		for _, d := range outer.Data {
			m := new(amqp.Message)
			if err := m.UnmarshalBinary(d); err != nil {
				return err
			}
			msgs = append(msgs, m)
		}
	}
	now := time.Now()
	for _, m := range msgs {
		s.seq++
		for _, sub := range t.subs {
			sub.queue = append(sub.queue, &stored{msg: m, seq: s.seq, enqueued: now})
		}
	}
	for _, sub := range t.subs {
		s.dispatch(sub)
	}
	return nil
}

// dispatch hands queued messages to the subscription's receivers that have
// credit, round robin.
func (s *Server) dispatch(sub *subscription) {
	for len(sub.queue) > 0 {
		var l *link
		for i := range sub.receivers {
			r := sub.receivers[(sub.rr+i)%len(sub.receivers)]
			if r.credit > 0 {
				l = r
				sub.rr = (sub.rr + i + 1) % len(sub.receivers)
				break
			}
		}
		if l == nil {
			return
		}
		m := sub.queue[0]
		sub.queue = sub.queue[1:]
		var tok [16]byte
		_, _ = rand.Read(tok[:])
		if !l.preSettled {
			lm := &lockedMsg{m: m, link: l}
			sub.locked[tok] = lm
			l.sess.unsettled[l.sess.nextDelivery] = lm
		}
		l.sess.deliver(l, tok, deliveryMessage(m, tok), l.preSettled)
	}
}

// deliveryMessage is m as one delivery: the Service Bus annotations and the
// delivery count set.
func deliveryMessage(m *stored, tok [16]byte) *amqp.Message {
	out := *m.msg
	h := amqp.MessageHeader{}
	if m.msg.Header != nil {
		h = *m.msg.Header
	}
	h.DeliveryCount = m.deliveryCount
	out.Header = &h
	ann := amqp.Annotations{}
	for k, v := range m.msg.Annotations {
		ann[k] = v
	}
	ann["x-opt-sequence-number"] = m.seq
	ann["x-opt-enqueued-time"] = m.enqueued
	ann["x-opt-locked-until"] = time.Now().Add(time.Minute)
	out.Annotations = ann
	return &out
}

// deliver sends a message on a link to the client, split into frames.
func (se *session) deliver(l *link, tag [16]byte, m *amqp.Message, settled bool) {
	data, err := m.MarshalBinary()
	if err != nil {
		return
	}
	id := se.nextDelivery
	se.nextDelivery++
	l.deliveryCount++
	l.credit--
	maxFrame := int(se.c.maxFrame)
	for first := true; first || len(data) > 0; first = false {
		fields := list{l.handle, id, tag[:], uint32(0), settled, true}
		var perf bytes.Buffer
		encode(&perf, described{desc: uint64(codeTransfer), value: fields})
		room := maxFrame - 8 - perf.Len()
		chunk := data
		if len(chunk) > room {
			chunk = data[:room]
		} else {
			fields[5] = false
		}
		data = data[len(chunk):]
		se.nextOutgoingID++
		se.c.send(se.ch, fields, codeTransfer, chunk)
	}
}

// rpc answers a request on $cbs or $management.
func (se *session) rpc(l *link, data []byte) {
	var req amqp.Message
	if err := req.UnmarshalBinary(data); err != nil {
		return
	}
	status, desc := int32(200), "OK"
	var value any
	op, _ := req.ApplicationProperties["operation"].(string)
	if l.address != "$cbs" {
		switch op {
		case "com.microsoft:peek-message":
			status, desc = 204, "No messages"
		case "com.microsoft:renew-lock":
			body, _ := req.Value.(map[string]any)
			toks, _ := body["lock-tokens"].([]amqp.UUID)
			exp := make([]time.Time, len(toks))
			for i := range exp {
				exp[i] = time.Now().Add(time.Minute)
			}
			value = map[string]any{"expirations": exp}
		case "com.microsoft:update-disposition":
			body, _ := req.Value.(map[string]any)
			toks, _ := body["lock-tokens"].([]amqp.UUID)
			disp, _ := body["disposition-status"].(string)
			sub := se.c.s.lookupSub(l.entity)
			for _, t := range toks {
				code := uint64(codeAccepted)
				if disp == "abandoned" {
					code = codeModified
				}
				if sub == nil || !se.c.s.outcome(sub, [16]byte(t), code) {
					status, desc = 410, "The lock supplied is invalid."
				}
			}
		default:
			status, desc = 501, "sbfake: operation "+strconv.Quote(op)+" is not implemented"
		}
	}
	var correlation any
	if req.Properties != nil {
		correlation = req.Properties.MessageID
	}
	reply := &amqp.Message{
		Properties:            &amqp.MessageProperties{CorrelationID: correlation},
		ApplicationProperties: map[string]any{"status-code": status, "status-description": desc},
		Value:                 value,
	}
	replyTo := ""
	if req.Properties != nil && req.Properties.ReplyTo != nil {
		replyTo = *req.Properties.ReplyTo
	}
	for _, se2 := range se.c.sessions {
		for _, rl := range se2.links {
			if rl.kind == kindRPCReceiver && rl.reply == replyTo {
				rl.outq = append(rl.outq, reply)
				se2.flushRPC(rl)
				return
			}
		}
	}
}

// flushRPC sends queued replies while the link has credit.
func (se *session) flushRPC(l *link) {
	for len(l.outq) > 0 && l.credit > 0 {
		m := l.outq[0]
		l.outq = l.outq[1:]
		var tag [16]byte
		_, _ = rand.Read(tag[:])
		se.deliver(l, tag, m, true)
	}
}
