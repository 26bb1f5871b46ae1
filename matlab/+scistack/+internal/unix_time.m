function t = unix_time()
%UNIX_TIME Seconds since 1970-01-01 UTC (with a fraction), in Octave and in MATLAB.
if scistack.internal.is_octave()
    t = time();
else
    t = posixtime(datetime('now', 'TimeZone', 'UTC'));
end
end
