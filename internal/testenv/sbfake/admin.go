package sbfake

import (
	"bytes"
	"fmt"
	"html"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
)

// AdminRequest is one request the admin transport served.
type AdminRequest struct {
	Method, Path string
	// Body is the request's ATOM entry, if any.
	Body string
}

// adminTransport answers the Service Bus administration API (ATOM over
// HTTPS) in process: no TLS, no socket.
type adminTransport struct {
	s *Server

	mu  sync.Mutex
	log []AdminRequest
}

// AdminTransport returns a transport for admin.ClientOptions (the
// embedded azcore.ClientOptions.Transport) that serves the administration
// API from this server, in process: PUT and DELETE of topics
// ("/<topic>") and subscriptions ("/<topic>/Subscriptions/<name>"), and
// GET of a subscription. A PUT answers 201 Created with the entry it was
// given; a GET the subscription's description with its CreatedAt (distinct
// for every subscription made under a name), its message counts and its
// count of dead-lettered messages; a missing entity 404. Other requests
// answer 501. Every request is recorded (see AdminRequests).
func (s *Server) AdminTransport() policy.Transporter {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.admin == nil {
		s.admin = &adminTransport{s: s}
	}
	return s.admin
}

// AdminRequests returns the requests the admin transport served, in order.
func (s *Server) AdminRequests() []AdminRequest {
	s.mu.Lock()
	a := s.admin
	s.mu.Unlock()
	if a == nil {
		return nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]AdminRequest(nil), a.log...)
}

func (a *adminTransport) Do(req *http.Request) (*http.Response, error) {
	var body []byte
	if req.Body != nil {
		var err error
		if body, err = io.ReadAll(req.Body); err != nil {
			return nil, err
		}
		_ = req.Body.Close()
	}
	path := strings.Trim(req.URL.Path, "/")
	a.mu.Lock()
	a.log = append(a.log, AdminRequest{Method: req.Method, Path: path, Body: string(body)})
	a.mu.Unlock()

	parts := strings.Split(path, "/")
	isSub := len(parts) == 3 && strings.EqualFold(parts[1], "subscriptions")
	isTopic := len(parts) == 1 && parts[0] != ""
	s := a.s
	status := http.StatusNotImplemented
	var out []byte
	switch {
	case req.Method == http.MethodPut && isTopic:
		s.AddTopic(parts[0])
		status, out = http.StatusCreated, body
	case req.Method == http.MethodPut && isSub:
		s.mu.Lock()
		exists := s.topics[strings.ToLower(parts[0])] != nil
		s.mu.Unlock()
		if !exists {
			status = http.StatusNotFound
			break
		}
		s.AddTopic(parts[0], parts[2])
		status, out = http.StatusCreated, body
	case req.Method == http.MethodGet && isSub:
		if out = s.subscriptionEntry(parts[0], parts[2]); out == nil {
			status = http.StatusNotFound
			break
		}
		status = http.StatusOK
	case req.Method == http.MethodDelete && isSub:
		if s.Pending(parts[0], parts[2]) < 0 {
			status = http.StatusNotFound
			break
		}
		s.RemoveSubscription(parts[0], parts[2])
		status = http.StatusOK
	case req.Method == http.MethodDelete && isTopic:
		if !s.removeTopic(parts[0]) {
			status = http.StatusNotFound
			break
		}
		status = http.StatusOK
	}
	h := http.Header{}
	if len(out) > 0 {
		h.Set("Content-Type", "application/atom+xml;type=entry;charset=utf-8")
	}
	return &http.Response{
		StatusCode:    status,
		Status:        http.StatusText(status),
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        h,
		Body:          io.NopCloser(bytes.NewReader(out)),
		ContentLength: int64(len(out)),
		Request:       req,
	}, nil
}

// subscriptionEntry is the ATOM entry of a subscription with its runtime
// properties, or nil when it does not exist.
func (s *Server) subscriptionEntry(topicName, name string) []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	sub := s.lookupSub(topicName + "/Subscriptions/" + name)
	if sub == nil {
		return nil
	}
	created := sub.created.Format(time.RFC3339Nano)
	active := len(sub.queue) + len(sub.locked)
	return fmt.Appendf(nil, `<entry xmlns="http://www.w3.org/2005/Atom"><title>%s</title>`+
		`<content type="application/xml"><SubscriptionDescription xmlns="http://schemas.microsoft.com/netservices/2010/10/servicebus/connect">`+
		`<MessageCount>%d</MessageCount><CreatedAt>%s</CreatedAt><UpdatedAt>%s</UpdatedAt><AccessedAt>%s</AccessedAt>`+
		`<CountDetails><ActiveMessageCount>%d</ActiveMessageCount><DeadLetterMessageCount>%d</DeadLetterMessageCount>`+
		`<ScheduledMessageCount>0</ScheduledMessageCount><TransferMessageCount>0</TransferMessageCount>`+
		`<TransferDeadLetterMessageCount>0</TransferDeadLetterMessageCount></CountDetails>`+
		`</SubscriptionDescription></content></entry>`,
		html.EscapeString(name), active+sub.deadLettered, created, created, created, active, sub.deadLettered)
}
