#!/usr/bin/env python3
"""XMPP traffic that activity.py does not make, for the families the dashboards
show: an s2s peer that authenticates with its certificate (SASL EXTERNAL over
STARTTLS), an outgoing s2s connection (that fails), a smacks resumption that
succeeds and one of a session that hibernated too long, and an upload through
mod_http_upload.

dashboard_traffic.py C2S S2S HTTP PEER_CERT PEER_KEY PEER_DOMAIN HIBERNATION_SECONDS
"""
import base64, http.client, socket, ssl, sys, time, urllib.parse
import xml.etree.ElementTree as ET

C2S, S2S, HTTP = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
PEER_CERT, PEER_KEY, PEER_DOMAIN, HIBERNATION = sys.argv[4], sys.argv[5], sys.argv[6], float(sys.argv[7])
NS_STREAM = "{http://etherx.jabber.org/streams}"
SASL = "urn:ietf:params:xml:ns:xmpp-sasl"
SM = "urn:xmpp:sm:3"
def log(*a): print("[%.3f]" % time.time(), *a, flush=True)


class Stream:
    """One XML stream over a socket, read element by element."""
    def __init__(self, port, ns):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.ns = ns
        self.queue = []

    def send(self, s):
        self.sock.sendall(s.encode())

    def open(self, to, frm=None):
        self.parser = ET.XMLPullParser(events=("start", "end")); self.depth = 0
        self.send("<?xml version='1.0'?><stream:stream xmlns='%s' xmlns:stream='http://etherx.jabber.org/streams' "
                  "to='%s'%s version='1.0'>" % (self.ns, to, " from='%s'" % frm if frm else ""))
        return self.expect(NS_STREAM + "features")

    def expect(self, tag, timeout=5):
        end = time.time() + timeout
        while True:
            for i, el in enumerate(self.queue):
                if el.tag == tag:
                    return self.queue.pop(i)
            if time.time() > end:
                raise TimeoutError("waiting for %s; have %s" % (tag, [e.tag for e in self.queue]))
            self.sock.settimeout(0.2)
            try:
                data = self.sock.recv(65536)
            except (socket.timeout, TimeoutError, ssl.SSLWantReadError):
                continue
            if not data:
                raise EOFError("closed while waiting for %s" % tag)
            self.parser.feed(data)
            for ev, el in self.parser.read_events():
                if ev == "start":
                    self.depth += 1
                else:
                    self.depth -= 1
                    if self.depth == 1:
                        self.queue.append(el)

    def starttls(self, cert=None, key=None):
        self.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        self.expect("{urn:ietf:params:xml:ns:xmpp-tls}proceed")
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
        if cert:
            ctx.load_cert_chain(cert, key)
        self.sock = ctx.wrap_socket(self.sock, server_hostname="localhost")


def s2s_peer():
    """A remote server that proves its name with its certificate."""
    s = Stream(S2S, "jabber:server")
    s.open("localhost", PEER_DOMAIN)
    s.starttls(PEER_CERT, PEER_KEY)
    features = s.open("localhost", PEER_DOMAIN)
    mechs = [m.text for m in features.iter("{%s}mechanism" % SASL)]
    if "EXTERNAL" not in mechs:
        raise RuntimeError("no SASL EXTERNAL offered to %s: %s" % (PEER_DOMAIN, ET.tostring(features)))
    s.send("<auth xmlns='%s' mechanism='EXTERNAL'>%s</auth>" % (SASL, base64.b64encode(PEER_DOMAIN.encode()).decode()))
    s.expect("{%s}success" % SASL)
    s.open("localhost", PEER_DOMAIN)
    log("s2s: %s authenticated with its certificate" % PEER_DOMAIN)
    time.sleep(1.5)  # across a statistics collection: an authenticated s2sin connection
    s.send("</stream:stream>")
    s.sock.close()


def login(user, pw, bind=True):
    s = Stream(C2S, "jabber:client")
    s.open("localhost")
    s.starttls()
    s.open("localhost")
    tok = base64.b64encode(("\0%s\0%s" % (user, pw)).encode()).decode()
    s.send("<auth xmlns='%s' mechanism='PLAIN'>%s</auth>" % (SASL, tok))
    s.expect("{%s}success" % SASL)
    s.open("localhost")
    if bind:
        s.send("<iq type='set' id='bind'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>")
        s.expect("{jabber:client}iq")
    return s


def hibernating_session(user, pw):
    """A session with resumption on, left without a goodbye: it hibernates."""
    s = login(user, pw)
    s.send("<enable xmlns='%s' resume='true'/>" % SM)
    sm_id = s.expect("{%s}enabled" % SM).get("id")
    s.send("<presence/>")
    time.sleep(0.3)
    s.sock.close()
    return sm_id


def resume(user, pw, sm_id):
    s = login(user, pw, bind=False)
    s.send("<resume xmlns='%s' h='0' previd='%s'/>" % (SM, sm_id))
    return s


def smacks():
    sm_id = hibernating_session("alice", "alicepw")
    time.sleep(0.5)
    s = resume("alice", "alicepw", sm_id)
    s.expect("{%s}resumed" % SM)
    log("smacks: resumed", sm_id)
    s.send("<presence type='unavailable'/></stream:stream>")
    s.sock.close()

    sm_id = hibernating_session("bob", "bobpw")
    time.sleep(HIBERNATION + 2)
    s = resume("bob", "bobpw", sm_id)
    s.expect("{%s}failed" % SM)
    log("smacks: a resumption too late failed", sm_id)
    s.send("</stream:stream>")
    s.sock.close()


def http_upload():
    """A slot from mod_http_upload (upload2.localhost) and the upload."""
    s = login("alice", "alicepw")
    size = 3000
    s.send("<iq type='get' id='slot2' to='upload2.localhost'><request xmlns='urn:xmpp:http:upload:0' "
           "filename='dash.txt' size='%d' content-type='text/plain'/></iq>" % size)
    slot = s.expect("{jabber:client}iq")
    put = slot.find(".//{urn:xmpp:http:upload:0}put")
    if put is None:
        raise RuntimeError("no upload slot: %s" % ET.tostring(slot))
    u = urllib.parse.urlsplit(put.get("url"))
    conn = http.client.HTTPConnection("127.0.0.1", HTTP, timeout=10)
    conn.request("PUT", u.path, body=b"y" * size, headers={"Host": u.netloc, "Content-Type": "text/plain"})
    r = conn.getresponse(); r.read(); conn.close()
    if r.status not in (200, 201):
        raise RuntimeError("upload PUT: %d" % r.status)
    log("http_upload: PUT", r.status)
    s.send("</stream:stream>")
    s.sock.close()


def outbound_s2s():
    """A message to a domain nobody serves: Prosody initiates an s2s
    connection, which fails."""
    s = login("alice", "alicepw")
    s.send("<message to='someone@unreachable.example' type='chat'><body>hello</body></message>")
    time.sleep(0.5)
    log("s2s: a message to unreachable.example")
    s.send("</stream:stream>")
    s.sock.close()


s2s_peer()
outbound_s2s()
http_upload()
smacks()
log("done")
