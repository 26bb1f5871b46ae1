function head = first_bytes(path, n)
%FIRST_BYTES The first N bytes of the file PATH (fewer if it is shorter), as a uint8 row.
fid = fopen(path, 'r');
if fid < 0
    error('scistack:io', 'cannot open %s for reading', path);
end
head = fread(fid, n, '*uint8')';
fclose(fid);
end
