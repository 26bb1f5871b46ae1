function y = table_mean(frame, k)
%TABLE_MEAN The mean of a DataFrame input's column x, times K (a DataFrame saved from Python).
y = mean(frame.x) * k;
end
