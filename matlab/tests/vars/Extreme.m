classdef Extreme < scistack.BaseVariable
end
