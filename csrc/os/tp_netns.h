/* Network namespaces for the calling thread only (setns affects one thread).
 * Used to create devices and sockets directly inside a namespace without
 * moving the whole process. Functions return 0 / an fd, or -errno. */
#ifndef TP_NETNS_H
#define TP_NETNS_H

/* Open a namespace by name (/run/netns/NAME) or by path (anything with '/'). */
int tp_netns_open(const char *name_or_path);

/* Switch this thread to ns_fd; *saved receives an fd for the namespace to go
 * back to with tp_netns_restore, which also closes it. */
int tp_netns_enter(int ns_fd, int *saved);
int tp_netns_restore(int saved);

#endif
