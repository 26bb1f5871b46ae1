function b = t_read(path)
%T_READ The bytes of a file as a uint8 row.
fid = fopen(path, 'r');
if fid < 0
    error('test:failed', 'cannot open %s', path);
end
b = fread(fid, Inf, '*uint8')';
fclose(fid);
end
