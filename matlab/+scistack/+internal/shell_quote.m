function q = shell_quote(s)
%SHELL_QUOTE Quote one argument for system(): POSIX sh on Unix, cmd.exe on Windows.
if ispc
    q = ['"', strrep(s, '"', '""'), '"'];
else
    q = ['''', strrep(s, '''', '''\'''''), ''''];
end
end
