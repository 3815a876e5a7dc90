-- Request smuggling matrix (the hardening issue, points 1 and 8): raw byte
-- streams, each ending with a pipelined valid request, sent on fresh
-- connections to luring and to a real nginx started here.  Each case fails
-- when luring runs a request (2xx) at a position where nginx rejected it or
-- ran nothing, or when both ran a request there but not the same one
-- (method, target and body differ: the stream was split differently).
-- Where luring is stricter than nginx (rejects what nginx runs) the case
-- passes and shows up in the table printed at the end.  A case with a
-- `quirk` is one where nginx 1.22 rejects what RFC 9112 allows: luring
-- may run it (shown as "nginx-quirk"), the requests must still match.
--
-- Each family cites the RFC section its cases check.  The table lists the
-- cases that are not "same"; SMUGGLING_VERBOSE=1 lists every case with the
-- requests each server ran.
--
-- The cases quoted by the issue (`issue = true`) must in addition get 400
-- as the only response and a close from luring: no request after the bad
-- one, smuggled or pipelined, is ever run.
--
-- Both servers answer every path and method with one line that names the
-- request: "METHOD target body".  The last request of every stream carries
-- Connection: close, so a server that kept up closes at once; a server
-- still waiting for bytes is given READ_TIMEOUT.
local helper = require "helper"
local origin = require "origin"
local socket = require "socket"

local LURING_PORT = 18601
local NGINX_PORT = 18602
local READ_TIMEOUT = 0.8      -- s after the last send of a batch
local BATCH = 40              -- cases in flight at once (2 connections each)

local SCRIPT = [[
local app = luring.app()
app:listen("@LISTEN@")
local function ident(req)
  local target = req.path
  if req.query then target = target .. "?" .. req.query end
  return 200, { ["Content-Type"] = "text/plain" },
         req.method .. " " .. target .. " " .. req:body() .. "\n"
end
for _, m in ipairs({ "GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "FOO" }) do
  app:route(m, "/", ident)
  app:route(m, "/*", ident)
end
]]

-- the same line from nginx: the echo module reads the body into one
-- buffer, then `return` answers with a Content-Length (echo's own output
-- has none, and an HTTP/1.0 keep-alive connection would close after it)
local NGINX_LOCATIONS = [[
    client_body_buffer_size 1m;
    client_body_in_single_buffer on;
    client_max_body_size 1m;
    location / {
      echo_read_request_body;
      echo_exec @ident;
    }
    location @ident {
      default_type text/plain;
      return 200 "$request_method $request_uri $request_body\n";
    }
]]

---------------------------------------------------------------------------
-- The matrix
---------------------------------------------------------------------------

local SECOND = "GET /second HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
local SMUGGLED = "GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"
local SL = tostring(#SMUGGLED)                -- a body that is exactly SMUGGLED
local HSL = tostring(5 + #SMUGGLED)           -- "hello" .. SMUGGLED

-- A POST /first with extra header lines (each ending in CRLF) and raw body
-- bytes, then the pipelined /second.
local function post(fields, body)
  return "POST /first HTTP/1.1\r\nHost: x\r\n" .. fields .. "\r\n" .. body .. SECOND
end
local function get(fields)
  return "GET /first HTTP/1.1\r\nHost: x\r\n" .. (fields or "") .. "\r\n" .. SECOND
end
-- a request line (without CRLF) and the Host line
local function line(reqline, fields)
  return reqline .. "\r\nHost: x\r\n" .. (fields or "") .. "\r\n" .. SECOND
end
local function chunked(body)
  return post("Transfer-Encoding: chunked\r\n", body)
end
-- a chunked body whose first chunk has this size line; the data and the
-- rest are a valid 5-byte chunk ("hello") and the last chunk
local function chunk_line(size_line)
  return chunked(size_line .. "\r\nhello\r\n0\r\n\r\n")
end

local FAMILIES = {
  { name = "content-length", rfc = "RFC 9112 §6.3, RFC 9110 §8.6", cases = {
    { "valid",               post("Content-Length: 5\r\n", "hello") },
    { "zero",                post("Content-Length: 0\r\n", "") },
    { "leading zeros",       post("Content-Length: 005\r\n", "hello") },
    { "no space",            post("Content-Length:5\r\n", "hello") },
    { "trailing OWS",        post("Content-Length: 5 \r\n", "hello") },
    { "plus sign",           post("Content-Length: +5\r\n", "hello"), issue = true },
    { "minus sign",          post("Content-Length: -5\r\n", "hello"), issue = true },
    { "hex",                 post("Content-Length: 0x5\r\n", "hello") },
    { "junk after digits",   post("Content-Length: 5a\r\n", "hello") },
    { "space inside",        post("Content-Length: 5 0\r\n", "hello") },
    { "empty value",         post("Content-Length: \r\n", "hello") },
    { "overflow 20 digits",  post("Content-Length: 99999999999999999999\r\n", "hello") },
    { "list of equal",       post("Content-Length: 5, 5\r\n", "hello") },
    { "list of different",   post("Content-Length: 5, " .. HSL .. "\r\n", "hello" .. SMUGGLED) },
    { "repeated equal",      post("Content-Length: 5\r\nContent-Length: 5\r\n", "hello") },
    { "repeated different",  post("Content-Length: 5\r\nContent-Length: " .. HSL .. "\r\n", "hello" .. SMUGGLED),
      issue = true },
    { "repeated different (long first)",
                             post("Content-Length: " .. HSL .. "\r\nContent-Length: 5\r\n", "hello" .. SMUGGLED),
      issue = true },
    { "body holds a request", post("Content-Length: " .. SL .. "\r\n", SMUGGLED) },
    { "GET with body",       "GET /first HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello" .. SECOND },
    { "vertical tab",        post("Content-Length: \v5\r\n", "hello") },
  } },

  { name = "field-name syntax", rfc = "RFC 9112 §5.1, RFC 9110 §5.1", cases = {
    { "space before colon (CL)", post("Content-Length : " .. SL .. "\r\n", SMUGGLED), issue = true },
    { "space before colon (CL 33 issue)",
                             post("Content-Length : 33\r\n", ("A"):rep(33)), issue = true },
    { "space before colon (TE)",
                             post("Transfer-Encoding : chunked\r\n", "0\r\n\r\n" .. SMUGGLED), issue = true },
    { "tab before colon (CL)", post("Content-Length\t: 5\r\n", "hello"), issue = true },
    { "space before colon (other field)", get("X-Foo : bar\r\n") },
    { "control char in name", get("X-F\1oo: bar\r\n") },
    { "CL name with ctl",    post("Content-Length\1: 5\r\n", "hello") },
    { "empty name",          get(": bar\r\n") },
    { "no colon",            get("X-Foo bar\r\n") },
    { "name with slash",     get("X/Foo: bar\r\n") },
    { "TE with underscore",  post("Transfer_Encoding: chunked\r\nContent-Length: 5\r\n", "hello") },
  } },

  { name = "transfer-encoding", rfc = "RFC 9112 §6.1, §6.3", cases = {
    { "chunked",             chunked("5\r\nhello\r\n0\r\n\r\n") },
    { "Chunked (case)",      post("Transfer-Encoding: Chunked\r\n", "5\r\nhello\r\n0\r\n\r\n") },
    { "CHUNKED (case)",      post("Transfer-Encoding: CHUNKED\r\n", "5\r\nhello\r\n0\r\n\r\n") },
    { "trailing OWS",        post("Transfer-Encoding: chunked \r\n", "5\r\nhello\r\n0\r\n\r\n") },
    { "tab before value",    post("Transfer-Encoding:\tchunked\r\n", "5\r\nhello\r\n0\r\n\r\n"),
      quirk = "nginx 1.22 skips only SP before a value, not HTAB (OWS, RFC 9110 §5.6.3): 501" },
    { "gzip",                post("Transfer-Encoding: gzip\r\n", "5\r\nhello\r\n0\r\n\r\n"), issue = true },
    { "identity",            post("Transfer-Encoding: identity\r\n", "5\r\nhello\r\n0\r\n\r\n") },
    { "chunked, gzip",       post("Transfer-Encoding: chunked, gzip\r\n", "5\r\nhello\r\n0\r\n\r\n"),
      issue = true },
    { "gzip, chunked",       post("Transfer-Encoding: gzip, chunked\r\n", "5\r\nhello\r\n0\r\n\r\n") },
    { "chunked, chunked",    post("Transfer-Encoding: chunked, chunked\r\n", "5\r\nhello\r\n0\r\n\r\n") },
    { "repeated chunked",    post("Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
                                  "5\r\nhello\r\n0\r\n\r\n"), issue = true },
    { "chunked then gzip line", post("Transfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n",
                                  "5\r\nhello\r\n0\r\n\r\n"), issue = true },
    { "xchunked",            post("Transfer-Encoding: xchunked\r\n", "5\r\nhello\r\n0\r\n\r\n") },
    { "chunked-false",       post("Transfer-Encoding: chunked-false\r\n", "5\r\nhello\r\n0\r\n\r\n") },
    { "empty value",         post("Transfer-Encoding: \r\n", "5\r\nhello\r\n0\r\n\r\n") },
    { "vertical tab",        post("Transfer-Encoding: \vchunked\r\n", "5\r\nhello\r\n0\r\n\r\n") },
    { "quoted",              post("Transfer-Encoding: \"chunked\"\r\n", "5\r\nhello\r\n0\r\n\r\n") },
    { "comma only then chunked", post("Transfer-Encoding: ,chunked\r\n", "5\r\nhello\r\n0\r\n\r\n") },
  } },

  { name = "content-length with transfer-encoding", rfc = "RFC 9112 §6.3 (3), §6.1", cases = {
    { "CL then TE",          post("Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
                                  "0\r\n\r\n" .. SMUGGLED), issue = true },
    { "TE then CL",          post("Transfer-Encoding: chunked\r\nContent-Length: 5\r\n",
                                  "0\r\n\r\n" .. SMUGGLED), issue = true },
    { "CL 0 then TE",        post("Content-Length: 0\r\nTransfer-Encoding: chunked\r\n",
                                  "5\r\nhello\r\n0\r\n\r\n"), issue = true },
    { "TE gzip and CL",      post("Transfer-Encoding: gzip\r\nContent-Length: 5\r\n", "hello"),
      issue = true },
    { "TE with space before colon and CL",
                             post("Transfer-Encoding : chunked\r\nContent-Length: 5\r\n",
                                  "0\r\n\r\n" .. SMUGGLED), issue = true },
  } },

  { name = "chunk-size", rfc = "RFC 9112 §7.1", cases = {
    { "leading zeros",       chunk_line("005") },
    { "upper-case hex",      chunked("A\r\nhelloworld\r\n0\r\n\r\n") },
    { "junk: 5 0",           chunk_line("5 0"), issue = true },
    { "overflow ffffffffffffffff1", chunk_line("ffffffffffffffff1"), issue = true },
    { "overflow 2^64",       chunk_line("10000000000000000"), issue = true },
    { "2^63",                chunk_line("8000000000000000") },
    { "0x prefix",           chunk_line("0x5") },
    { "minus",               chunk_line("-5") },
    { "plus",                chunk_line("+5") },
    { "trailing space",      chunk_line("5 ") },
    { "BWS before ext",      chunk_line("5 ;a=b") },
    { "empty size line",     chunked("\r\n5\r\nhello\r\n0\r\n\r\n") },
    { "not hex",             chunk_line("g") },
    { "last chunk 000",      chunked("5\r\nhello\r\n000\r\n\r\n") },
    { "size smaller than data", chunked("3\r\nhello\r\n0\r\n\r\n") },
    { "size larger than data", chunked("7\r\nhello\r\n0\r\n\r\n") },
  } },

  { name = "chunk-ext", rfc = "RFC 9112 §7.1.1", cases = {
    { "name=value",          chunk_line("5;a=b") },
    { "name only",           chunk_line("5;a") },
    { "quoted value",        chunk_line("5;a=\"b c\"") },
    { "two extensions",      chunk_line("5;a=b;c=d") },
    { "bare LF inside",      chunked("5;a\nb\r\nhello\r\n0\r\n\r\n"), issue = true },
    { "bare LF ends ext",    chunked("5;a=b\nhello\r\n0\r\n\r\n"), issue = true },
    { "bare CR inside",      chunked("5;a\rb\r\nhello\r\n0\r\n\r\n") },
    { "NUL inside",          chunk_line("5;a\0b") },
    { "unterminated quote",  chunk_line("5;a=\"b") },
    { "on last chunk",       chunked("5\r\nhello\r\n0;a=b\r\n\r\n") },
    { "bare LF on last chunk", chunked("5\r\nhello\r\n0;a\nb\r\n\r\n"), issue = true },
  } },

  { name = "chunk data and terminators", rfc = "RFC 9112 §7.1", cases = {
    { "data not followed by CRLF (issue)", chunked("5\r\nhelloXY0\r\n\r\n" .. SMUGGLED), issue = true },
    { "data followed by LF only", chunked("5\r\nhello\n0\r\n\r\n") },
    { "data followed by CR only", chunked("5\r\nhello\r0\r\n\r\n") },
    { "data followed by CR X", chunked("5\r\nhello\rX0\r\n\r\n"), issue = true },
    { "size line ends in LF", chunked("5\nhello\r\n0\r\n\r\n") },
    { "last chunk bare LF",  chunked("5\r\nhello\r\n0\n\n") },
    { "last chunk CR LF LF", chunked("5\r\nhello\r\n0\r\n\n") },
    { "several chunks",      chunked("1\r\nh\r\n2\r\nel\r\n2\r\nlo\r\n0\r\n\r\n") },
    { "empty body",          chunked("0\r\n\r\n") },
    { "smuggled after last chunk", chunked("0\r\n\r\n" .. SMUGGLED) },
  } },

  { name = "trailers", rfc = "RFC 9112 §7.1.2", cases = {
    { "one trailer",         chunked("5\r\nhello\r\n0\r\nX-T: 1\r\n\r\n") },
    { "Content-Length trailer", chunked("5\r\nhello\r\n0\r\nContent-Length: " .. SL .. "\r\n\r\n" .. SMUGGLED) },
    { "trailer with bare CR", chunked("5\r\nhello\r\n0\r\nX-T: a\rb\r\n\r\n") },
    { "trailer obs-fold",    chunked("5\r\nhello\r\n0\r\nX-T: a\r\n b\r\n\r\n") },
    { "trailer without colon", chunked("5\r\nhello\r\n0\r\nX-T\r\n\r\n") },
    { "trailer space before colon", chunked("5\r\nhello\r\n0\r\nX-T : 1\r\n\r\n") },
  } },

  { name = "bare CR and bare LF", rfc = "RFC 9112 §2.2", cases = {
    { "bare CR then request (issue)",
      "GET /first HTTP/1.1\r\nHost: x\r\n\rZGET /h HTTP/1.1\r\nHost: x\r\n\r\n" .. SECOND, issue = true },
    { "bare CR in request line", "GET /first\r HTTP/1.1\r\nHost: x\r\n\r\n" .. SECOND, issue = true },
    { "bare CR after version", "GET /first HTTP/1.1\rX\r\nHost: x\r\n\r\n" .. SECOND, issue = true },
    { "bare CR in field value", get("X-Foo: a\rb\r\n"), issue = true },
    { "bare CR in field name", get("X-F\roo: b\r\n"), issue = true },
    { "bare CR before CL",   post("X-Foo: a\rContent-Length: " .. SL .. "\r\n", SMUGGLED), issue = true },
    { "all lines bare LF",   "GET /first HTTP/1.1\nHost: x\n\n" .. SECOND },
    { "bare LF after request line", "GET /first HTTP/1.1\nHost: x\r\n\r\n" .. SECOND },
    { "bare LF in field list", "POST /first HTTP/1.1\r\nHost: x\nContent-Length: 5\r\n\r\nhello" .. SECOND },
    { "head ends LF CRLF",   "GET /first HTTP/1.1\r\nHost: x\n\r\n" .. SECOND },
  } },

  { name = "obs-fold", rfc = "RFC 9112 §5.2", cases = {
    { "folded other field",  get("X-Foo: a\r\n b\r\n"), issue = true },
    { "folded with tab",     get("X-Foo: a\r\n\tb\r\n"), issue = true },
    { "folded Content-Length", post("Content-Length:\r\n 5\r\n", "hello"), issue = true },
    { "folded Transfer-Encoding", post("Transfer-Encoding:\r\n chunked\r\n", "5\r\nhello\r\n0\r\n\r\n"),
      issue = true },
    { "TE folded onto another field", post("X-Foo: a\r\n Transfer-Encoding: chunked\r\nContent-Length: 5\r\n",
                                           "hello"), issue = true },
    { "space before first field", "GET /first HTTP/1.1\r\n Host: x\r\n\r\n" .. SECOND, issue = true },
  } },

  { name = "request-target", rfc = "RFC 9112 §3.2, RFC 3986 §3.3", cases = {
    { "NUL",                 line("GET /a\0b HTTP/1.1"), issue = true },
    { "TAB",                 line("GET /a\tb HTTP/1.1"), issue = true },
    { "FF",                  line("GET /a\fb HTTP/1.1"), issue = true },
    { "0x01",                line("GET /a\1b HTTP/1.1"), issue = true },
    { "DEL",                 line("GET /a\127b HTTP/1.1"), issue = true },
    { "byte 0x80",           line("GET /a\128b HTTP/1.1"), issue = true },
    { "byte 0xff",           line("GET /a\255b HTTP/1.1"), issue = true },
    { "UTF-8",               line("GET /caf\195\169 HTTP/1.1"), issue = true },
    { "space inside",        line("GET /a b HTTP/1.1") },
    { "fragment",            line("GET /a#b HTTP/1.1") },
    { "query",               line("GET /a?b=c HTTP/1.1") },
    { "absolute-form",       line("GET http://x/a HTTP/1.1") },
    { "asterisk with GET",   line("GET * HTTP/1.1") },
    { "no leading slash",    line("GET a HTTP/1.1") },
  } },

  { name = "field values", rfc = "RFC 9110 §5.5", cases = {
    { "NUL in value",        get("X-Foo: a\0b\r\n") },
    { "0x01 in value",       get("X-Foo: a\1b\r\n") },
    { "DEL in value",        get("X-Foo: a\127b\r\n") },
    { "obs-text in value",   get("X-Foo: a\200b\r\n") },
    { "TAB in value",        get("X-Foo: a\tb\r\n") },
    { "empty value",         get("X-Foo:\r\n") },
  } },

  { name = "HTTP version", rfc = "RFC 9112 §2.3, RFC 9110 §6.2", cases = {
    { "HTTP/1.0",            line("GET /first HTTP/1.0") },
    { "HTTP/1.0 keep-alive", "GET /first HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\n\r\n" .. SECOND },
    { "HTTP/1.1",            line("GET /first HTTP/1.1") },
    { "HTTP/2.0",            line("GET /first HTTP/2.0") },
    { "HTTP/3.0",            line("GET /first HTTP/3.0") },
    { "HTTP/1.10",           line("GET /first HTTP/1.10") },
    { "HTTP/1.2",            line("GET /first HTTP/1.2") },
    { "http/1.1 lower case", line("GET /first http/1.1") },
    { "HTTP/01.1",           line("GET /first HTTP/01.1") },
    { "HTTP/1",              line("GET /first HTTP/1") },
    { "HTTP/1.1 trailing space", line("GET /first HTTP/1.1 ") },
    { "missing version",     line("GET /first") },
    { "HTTP/0.9",            line("GET /first HTTP/0.9") },
  } },

  { name = "HTTP/1.0 framing", rfc = "RFC 9112 §6.1 (HTTP/1.0 with Transfer-Encoding)", cases = {
    { "1.0 with TE chunked",
      "POST /first HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n"
        .. "0\r\n\r\n" .. SMUGGLED .. SECOND, issue = true },
    { "1.0 with TE and CL",
      "POST /first HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n"
        .. "Content-Length: 5\r\n\r\n0\r\n\r\n" .. SMUGGLED .. SECOND, issue = true },
    { "1.0 with CL keep-alive",
      "POST /first HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\nContent-Length: 5\r\n\r\nhello" .. SECOND },
  } },

  { name = "request line and method", rfc = "RFC 9112 §3, §3.1; RFC 9110 §9.1", cases = {
    { "two spaces after method", line("GET  /first HTTP/1.1") },
    { "tab separator",       line("GET\t/first HTTP/1.1") },
    { "lower-case method",   line("get /first HTTP/1.1") },
    { "unknown method token", line("FOO /first HTTP/1.1") },
    { "method with ctl",     line("G\1ET /first HTTP/1.1") },
    { "method with paren",   line("GE(T /first HTTP/1.1") },
    { "empty method",        line(" /first HTTP/1.1") },
    { "missing target",      line("GET HTTP/1.1") },
    { "PUT with body",       "PUT /first HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello" .. SECOND },
    { "DELETE",              line("DELETE /first HTTP/1.1") },
    { "OPTIONS",             line("OPTIONS /first HTTP/1.1") },
  } },

  { name = "Host", rfc = "RFC 9112 §3.2", cases = {
    { "absent (1.1)",        "GET /first HTTP/1.1\r\n\r\n" .. SECOND },
    { "absent (1.0)",        "GET /first HTTP/1.0\r\n\r\n" .. SECOND },
    { "duplicate equal",     line("GET /first HTTP/1.1", "Host: x\r\n") },
    { "duplicate different", line("GET /first HTTP/1.1", "Host: y\r\n") },
    { "empty",               "GET /first HTTP/1.1\r\nHost:\r\n\r\n" .. SECOND,
      quirk = "nginx rejects an empty Host; RFC 9112 §3.2 has clients send one for a target without authority" },
    { "with port",           "GET /first HTTP/1.1\r\nHost: x:80\r\n\r\n" .. SECOND },
    { "with slash",          "GET /first HTTP/1.1\r\nHost: x/y\r\n\r\n" .. SECOND },
    { "with space",          "GET /first HTTP/1.1\r\nHost: x y\r\n\r\n" .. SECOND },
  } },

  { name = "long lines", rfc = "RFC 9112 §3 (414), RFC 6585 §5 (431)", cases = {
    { "target 5000 bytes",   line("GET /" .. ("a"):rep(5000) .. " HTTP/1.1") },
    { "target 20000 bytes",  line("GET /" .. ("a"):rep(20000) .. " HTTP/1.1") },
    { "field value 9000 bytes", get("X-Foo: " .. ("a"):rep(9000) .. "\r\n") },
    { "field value 20000 bytes", get("X-Foo: " .. ("a"):rep(20000) .. "\r\n") },
    { "100 fields",          get(("X-Foo: bar\r\n"):rep(100)) },
    { "chunk ext 9000 bytes", chunk_line("5;a=" .. ("b"):rep(9000)) },
  } },

  { name = "leading empty lines", rfc = "RFC 9112 §2.2", cases = {
    { "one CRLF",            "\r\n" .. get() },
    { "two CRLF",            "\r\n\r\n" .. get() },
    { "bare LF",             "\n" .. get() },
    { "leading space",       " " .. get() },
    { "leading TAB",         "\t" .. get() },
  } },

  { name = "pipelining", rfc = "RFC 9112 §9.3.2", cases = {
    { "two GETs",            get() },
    { "three GETs",          "GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n" .. SECOND },
    { "POST CL then GET",    post("Content-Length: 5\r\n", "hello") },
    { "POST chunked then GET", chunked("5\r\nhello\r\n0\r\n\r\n") },
    { "Connection: close first",
      "GET /first HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" .. SECOND },
  } },
}

local CASES = {}
for _, fam in ipairs(FAMILIES) do
  for _, c in ipairs(fam.cases) do
    CASES[#CASES + 1] = { name = fam.name .. ": " .. c[1], family = fam, bytes = c[2],
                          issue = c.issue, quirk = c.quirk }
  end
end

---------------------------------------------------------------------------
-- Sending and reading
---------------------------------------------------------------------------

-- The responses in a byte stream: { {status=, id=}, ... } (interim 1xx
-- responses left out), and an error when the stream does not end on a
-- response boundary.  A stream that does not start with "HTTP/" is an
-- HTTP/0.9 answer: one pseudo-response, status 200.
local function parse_stream(buf)
  local out, pos = {}, 1
  if #buf > 0 and buf:sub(1, 5) ~= "HTTP/" then
    return { { status = 200, id = "(HTTP/0.9) " .. buf:sub(1, 40) } }
  end
  while pos <= #buf do
    local hs = buf:find("\r\n\r\n", pos, true)
    if not hs then return out, "incomplete head" end
    local head = buf:sub(pos, hs - 1)
    local status = tonumber(head:match("^HTTP/%d%.%d (%d%d%d)"))
    if not status then return out, "bad status line " .. ("%q"):format(head:sub(1, 40)) end
    local h = {}
    for name, value in head:gmatch("\r\n([^:\r\n]+):[ \t]*([^\r\n]*)") do h[name:lower()] = value end
    local body
    pos = hs + 4
    if status < 200 or status == 204 or status == 304 then
      body = ""
    elseif (h["transfer-encoding"] or ""):lower():find("chunked", 1, true) then
      local parts = {}
      while true do
        local le = buf:find("\r\n", pos, true)
        if not le then return out, "incomplete chunked body" end
        local size = tonumber(buf:sub(pos, le - 1):match("^%x+") or "", 16)
        if not size then return out, "bad chunk size line" end
        if size == 0 then
          local te = buf:find("\r\n\r\n", le, true)
          if not te then return out, "incomplete last chunk" end
          pos = te + 4
          break
        end
        if #buf < le + 2 + size + 1 then return out, "incomplete chunk" end
        parts[#parts + 1] = buf:sub(le + 2, le + 1 + size)
        pos = le + 2 + size + 2
      end
      body = table.concat(parts)
    elseif h["content-length"] then
      local n = tonumber(h["content-length"])
      if #buf < pos + n - 1 then return out, "incomplete body" end
      body = buf:sub(pos, pos + n - 1)
      pos = pos + n
    else
      body = buf:sub(pos)
      pos = #buf + 1
    end
    if status >= 200 then
      out[#out + 1] = { status = status, id = status < 300 and body:gsub("\n$", "") or nil }
    end
  end
  return out
end

-- Send every case's bytes on its own connection to each port and read
-- until each connection closes or READ_TIMEOUT passes.  Both servers get
-- the batch at once, so their waits overlap.
-- results[port][i] = { buf, closed, responses, parse_err }.
local function run_batch(ports, first, last, results)
  local socks, open = {}, {}
  for i = first, last do
    for _, port in ipairs(ports) do
      local s = socket.tcp()
      s:settimeout(2)
      assert(s:connect("127.0.0.1", port))
      s:setoption("tcp-nodelay", true)
      s:settimeout(1)
      local ok, err = s:send(CASES[i].bytes)
      local r = { buf = "", closed = false, send_err = not ok and err or nil }
      results[port][i] = r
      s:settimeout(0)
      socks[#socks + 1] = s
      open[s] = r
    end
  end
  local deadline = helper.now() + READ_TIMEOUT
  while next(open) and helper.now() < deadline do
    local list = {}
    for s in pairs(open) do list[#list + 1] = s end
    local readable = socket.select(list, nil, math.max(0, deadline - helper.now()))
    for _, s in ipairs(readable or {}) do
      local r = open[s]
      local data, err, partial = s:receive(65536)
      local got = data or partial
      if got and #got > 0 then r.buf = r.buf .. got end
      if err and err ~= "timeout" then
        r.closed = true
        r.close_err = err
        open[s] = nil
      end
    end
  end
  for _, s in ipairs(socks) do s:close() end
end

local function run_all(ports)
  local results = {}
  for _, port in ipairs(ports) do results[port] = {} end
  for first = 1, #CASES, BATCH do
    run_batch(ports, first, math.min(#CASES, first + BATCH - 1), results)
  end
  for _, port in ipairs(ports) do
    for _, r in pairs(results[port]) do r.responses, r.parse_err = parse_stream(r.buf) end
  end
  return results
end

local function summary(r)
  local s = {}
  for _, res in ipairs(r.responses) do s[#s + 1] = tostring(res.status) end
  local out = #s > 0 and table.concat(s, " ") or "-"
  if r.parse_err then out = out .. " (" .. r.parse_err .. ")" end
  return out .. (r.closed and " close" or " open")
end

-- The identity line with an absolute-form target's scheme and authority
-- dropped: nginx's $request_uri holds only the path there.  (What the
-- target means is not framing; this spec compares framing.)
local function same_request(a, b)
  local function norm(id) return (id:gsub("^(%S+ )%a[%w+.-]*://[^/ ]*", "%1")) end
  return norm(a) == norm(b)
end

-- Luring's result against nginx's for one case:
--   verdict  "same" | "stricter" (luring rejected what nginx ran)
--            | "nginx-quirk" (luring ran what nginx wrongly rejects, see
--              the case's `quirk`) | "FAIL" (luring ran what nginx did not)
--            | "ISSUE" (an issue case without 400 and a close)
--   why      the failure, or nil
local function judge(c, lur, ngx)
  if lur.parse_err then
    return "FAIL", "luring's responses do not parse: " .. lur.parse_err
  end
  local why, stricter
  local lur_ok, ngx_ok = 0, 0
  for _, n in ipairs(ngx.responses) do if n.status < 300 then ngx_ok = ngx_ok + 1 end end
  for i, l in ipairs(lur.responses) do
    local n = ngx.responses[i]
    local l_ok, n_ok = l.status < 300, n ~= nil and n.status < 300
    if l_ok then lur_ok = lur_ok + 1 end
    if l_ok and not n_ok then
      why = why or ("luring ran request %d (%q), nginx %s"):format(i, l.id,
        n and ("answered " .. n.status) or "ran nothing there")
    elseif l_ok and n_ok and not same_request(l.id, n.id) then
      why = why or ("request %d split differently: luring ran %q, nginx ran %q"):format(i, l.id, n.id)
    elseif n_ok and not l_ok then
      stricter = true
    end
  end
  if lur_ok > ngx_ok then
    why = why or ("luring ran %d requests, nginx %d"):format(lur_ok, ngx_ok)
  elseif lur_ok < ngx_ok then
    stricter = true
  end
  if why and c.quirk then
    return "nginx-quirk"
  elseif why then
    return "FAIL", why
  end
  if c.issue then
    -- the issue's cases: 400, then a close, and no request run after it
    local r1 = lur.responses[1]
    if #lur.responses ~= 1 or r1.status ~= 400 or not lur.closed then
      return "ISSUE", "the issue asks for one 400 and a close"
    end
  end
  return stricter and "stricter" or "same"
end

local function ids(r)
  local s = {}
  for _, res in ipairs(r.responses) do
    s[#s + 1] = res.id and ("%q"):format(res.id:sub(1, 60)) or tostring(res.status)
  end
  return table.concat(s, ", ")
end

---------------------------------------------------------------------------

describe("request smuggling matrix (" .. #CASES .. " cases, luring vs nginx)", function()
  local lur_res, ngx_res
  local t_run

  lazy_setup(function()
    origin.start{ port = NGINX_PORT, locations = NGINX_LOCATIONS }
    helper.start(SCRIPT, { port = LURING_PORT })
    local t0 = helper.now()
    local res = run_all({ LURING_PORT, NGINX_PORT })
    lur_res, ngx_res = res[LURING_PORT], res[NGINX_PORT]
    t_run = helper.now() - t0
  end)

  lazy_teardown(function()
    if lur_res then
      local rows, count = {}, {}
      local verbose = os.getenv("SMUGGLING_VERBOSE")
      for i, c in ipairs(CASES) do
        local lur, ngx = lur_res[i], ngx_res[i]
        local verdict = judge(c, lur, ngx)
        count[verdict] = (count[verdict] or 0) + 1
        local hang = #lur.responses == 0 and not lur.closed and #ngx.responses > 0
        if verbose or verdict ~= "same" or hang then
          rows[#rows + 1] = ("%-11s %-52s nginx: %-18s luring: %s%s"):format(verdict, c.name:sub(1, 52),
            summary(ngx), summary(lur), hang and "  (no answer in " .. READ_TIMEOUT .. " s)" or "")
          if verbose then
            rows[#rows + 1] = "              nginx: " .. ids(ngx) .. "\n              luring: " .. ids(lur)
          end
        end
      end
      local counts = {}
      for _, v in ipairs({ "same", "stricter", "nginx-quirk", "FAIL", "ISSUE" }) do
        counts[#counts + 1] = v .. " " .. (count[v] or 0)
      end
      print(("\nsmuggling matrix: %d cases (%s), %.1f s of I/O; cases other than \"same\":")
        :format(#CASES, table.concat(counts, ", "), t_run))
      print(table.concat(rows, "\n"))
    end
    origin.teardown()
  end)

  it("has at least 100 cases, each ending with a pipelined request", function()
    assert.is_true(#CASES >= 100, #CASES .. " cases")
    for _, c in ipairs(CASES) do
      assert.are.equal(SECOND, c.bytes:sub(-#SECOND), c.name)
    end
  end)

  -- every stream is whole: nginx answers or rejects it and closes (the
  -- last request has Connection: close), none leaves it waiting for bytes
  it("nginx answered every case with parseable responses, then closed", function()
    for i, c in ipairs(CASES) do
      assert.is_nil(ngx_res[i].parse_err, c.name .. ": " .. summary(ngx_res[i]))
      assert.is_true(#ngx_res[i].responses > 0 and ngx_res[i].closed, c.name .. ": " .. summary(ngx_res[i]))
    end
  end)

  for i, c in ipairs(CASES) do
    it(c.name .. " (" .. c.family.rfc .. ")", function()
      local lur, ngx = lur_res[i], ngx_res[i]
      local verdict, why = judge(c, lur, ngx)
      assert.is_nil(why, ("%s: %s\nnginx:  %s  [%s]\nluring: %s  [%s]"):format(verdict, tostring(why),
        summary(ngx), ids(ngx), summary(lur), ids(lur)))
    end)
  end

  it("luring kept serving, no crash", function()
    assert.are.equal(200, helper.get(LURING_PORT, "/alive").status)
  end)
end)
