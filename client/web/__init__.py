"""`tmuxish web`: a browser front end that is an ordinary client of the server.

``wire`` is the WebSocket frame format the page speaks, ``flow`` the acknowledgement window of one
tab, ``guard`` the checks every HTTP and WebSocket request passes, ``tab`` one browser tab attached
to a session, and ``gateway`` the HTTP/WebSocket server that ties them together. Needs the
``web`` extra (``websockets``); nothing here is imported by the everyday commands.
"""
